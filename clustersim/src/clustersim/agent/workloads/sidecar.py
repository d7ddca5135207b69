"""The llm-d routing sidecar on decode pods: a reverse proxy in front of the local vLLM.

With an `x-prefiller-host-port` header (set by the endpoint picker) a completion is run in two
halves, as the nixlv2 connector does: a one-token prefill request to the named prefill pod, then
the decode request to the local vLLM with the prefill's `kv_transfer_params`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
from aiohttp import web

from clustersim.agent.meta import utc_now
from clustersim.agent.workloads.process import ExitStatus, Process, ProcessContext
from clustersim.agent.workloads.vllm import command_text

PREFILLER_HEADER = "x-prefiller-host-port"
_COMPLETION_PATHS = ("/v1/completions", "/v1/chat/completions")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


def sidecar_ports(container: dict[str, Any]) -> tuple[int, int] | None:
    """(listen port, vLLM port) from `--port=8000 --vllm-port=8200`, or None."""
    text = command_text(container)
    vllm = re.search(r"--vllm-port[= ](\d+)", text)
    if vllm is None:
        return None
    port = re.search(r"--port[= ](\d+)", text)
    return (int(port.group(1)) if port else 8000), int(vllm.group(1))


def klog(level: str, source: str, message: str) -> str:
    now = utc_now()
    return f"{level}{now.strftime('%m%d %H:%M:%S.%f')}       1 {source}] {message}"


class RoutingSidecarProcess(Process):
    def __init__(self, ctx: ProcessContext, port: int, vllm_port: int) -> None:
        super().__init__(ctx)
        self.port = port
        self.vllm_port = vllm_port

    async def run(self) -> ExitStatus:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.proxy)
        self.ctx.log.write(
            klog(
                "I",
                "main.go:58",
                f'"starting routing proxy" port="{self.port}" '
                f'vllmPort="{self.vllm_port}" connector="nixlv2"',
            )
        )
        try:
            await self.serve(app, self.port)
        except OSError as error:
            self.ctx.log.write(klog("E", "main.go:71", f'"failed to start" err="{error}"'))
            return ExitStatus(1, "Error")
        self.ctx.log.write(klog("I", "server.go:96", f'"proxy server started" addr=":{self.port}"'))
        await self.wait_stop()
        await self.close_servers()
        self.ctx.log.write(klog("I", "server.go:120", '"shutting down"'))
        return ExitStatus(0, "Completed")

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> web.Response:
        try:
            async with self.ctx.http.request(
                method, url, headers=headers, data=body, timeout=aiohttp.ClientTimeout(total=300)
            ) as upstream:
                payload = await upstream.read()
                out_headers = {
                    k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
                }
                return web.Response(status=upstream.status, body=payload, headers=out_headers)
        except aiohttp.ClientError as error:
            self.ctx.log.write(klog("E", "proxy.go:212", f'"http: proxy error" err="{error}"'))
            return web.Response(status=502)

    async def proxy(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        local = f"http://{self.ctx.pod_ip}:{self.vllm_port}{request.path_qs}"
        prefiller = request.headers.get(PREFILLER_HEADER)
        if not (prefiller and request.method == "POST" and request.path in _COMPLETION_PATHS):
            return await self._send(request.method, local, headers, body)
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return await self._send(request.method, local, headers, body)
        prefill_payload = dict(payload)
        prefill_payload.update(
            {
                "kv_transfer_params": {"do_remote_decode": True, "do_remote_prefill": False},
                "max_tokens": 1,
                "stream": False,
            }
        )
        prefill_payload.pop("max_completion_tokens", None)
        self.ctx.log.write(
            klog(
                "I", "connector_nixlv2.go:67", f'"running NIXL protocol V2" prefiller="{prefiller}"'
            )
        )
        prefill = await self._send(
            "POST",
            f"http://{prefiller}{request.path}",
            {"Content-Type": "application/json"},
            json.dumps(prefill_payload).encode(),
        )
        if prefill.status != 200 or prefill.body is None:
            return prefill
        assert isinstance(prefill.body, bytes)
        transfer = (json.loads(prefill.body) or {}).get("kv_transfer_params")
        payload["kv_transfer_params"] = transfer
        return await self._send(
            "POST", local, {"Content-Type": "application/json"}, json.dumps(payload).encode()
        )
