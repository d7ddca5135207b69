"""The kubelet HTTPS API the API server proxies `pods/{name}/log` and node proxies to.

`GET /containerLogs/{namespace}/{pod}/{container}` with tailLines, sinceSeconds, sinceTime,
timestamps, follow, previous and limitBytes. `follow` streams (chunked) until the container
instance stops or the client goes away; `previous` serves the last terminated instance.
Each simulated node listens on its own InternalIP (127.0.10.N) with one shared aiohttp app,
over TLS with a serving certificate for the node's addresses (InternalIP and hostname) signed
by the kubelet CA, as a real kubelet serves 10250: an API server given that CA
(`--kubelet-certificate-authority`) verifies it; one given none skips verification, as
kube-apiserver does by default.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from clustersim.agent.kubelet.kubelet import Kubelet, SimNode
from clustersim.agent.kubelet.logs import LogQuery
from clustersim.agent.meta import parse_time
from clustersim.listeners import listen_preferring
from clustersim.pki import CertificateAuthority, issue_serving

DEFAULT_KUBELET_PORT = 10250
SHUTDOWN_SECONDS = 3.0


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("true", "1", "yes")


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as error:
        raise web.HTTPBadRequest(text=f"invalid {name}: {value!r}") from error


class KubeletServer:
    def __init__(self, kubelet: Kubelet, ca: CertificateAuthority, pki_dir: Path) -> None:
        self.kubelet = kubelet
        self.ca = ca
        self.pki_dir = pki_dir
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        pod_name = request.match_info["pod"]
        container_name = request.match_info["container"]
        worker = self.kubelet.worker_for(namespace, pod_name)
        if worker is None:
            raise web.HTTPNotFound(text=f'pod "{pod_name}" not found in namespace "{namespace}"')
        runtime = worker.container(container_name)
        if runtime is None:
            raise web.HTTPNotFound(
                text=f'container "{container_name}" in pod "{pod_name}" is not available'
            )
        previous = _flag(request, "previous")
        buffer = runtime.previous_log if previous else runtime.log
        if buffer is None:
            if previous:
                raise web.HTTPBadRequest(
                    text=f'previous terminated container "{container_name}" in pod '
                    f'"{pod_name}" not found'
                )
            reason = (runtime.state.get("waiting") or {}).get("reason", "ContainerCreating")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                reason = "trying and failing to pull image"
            raise web.HTTPBadRequest(
                text=f'container "{container_name}" in pod "{pod_name}" is waiting to start: '
                f"{reason}"
            )
        query = LogQuery(
            tail_lines=_int(request, "tailLines"),
            since_seconds=_int(request, "sinceSeconds"),
            since_time=parse_time(request.query.get("sinceTime")),
            timestamps=_flag(request, "timestamps"),
            limit_bytes=_int(request, "limitBytes"),
        )
        if not _flag(request, "follow") or previous:
            return web.Response(body=buffer.select(query), content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            async for chunk in buffer.follow(query):
                await response.write(chunk)
            await response.write_eof()
        return response

    async def start(self, nodes: list[SimNode]) -> None:
        """Listen on each node's IP: the standard kubelet port when free, else any free port."""
        # A followed log of a quiet container waits for new lines; when its client (the API
        # server) goes away the handler is cancelled, so the stream ends then and there, as the
        # docstring says. Open follows must not hold the agent's shutdown for long either.
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
        await runner.setup()
        self._runner = runner
        for node in nodes:
            sock = listen_preferring(node.ip, DEFAULT_KUBELET_PORT)
            node.kubelet_port = int(sock.getsockname()[1])
            serving = issue_serving(self.ca, self.pki_dir, f"kubelet-{node.name}", node.name,
                                    [node.ip], [node.name])
            await web.SockSite(runner, sock, ssl_context=serving.server_context()).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
