"""Pod logs and the pod, service and node proxies, forwarded over real HTTP.

Logs are fetched from the kubelet of the pod's node (`/containerLogs/...` over HTTPS on the
node's InternalIP and kubelet port) and streamed back, as the real API server does. The kubelet's
certificate is verified against the kubelet CA when the server has one
(`--kubelet-certificate-authority`), and not verified otherwise, as kube-apiserver does.
Proxies forward method, query, body and headers (minus hop-by-hop ones and the caller's
credentials) to a pod IP, a ready endpoint of a Service, or a node's kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from clustersim.apiserver.errors import ApiError, bad_request, internal_error, not_found
from clustersim.apiserver.kinds import ResourceType
from clustersim.apiserver.objects import ObjectService
from clustersim.apiserver.storage import name_of

JsonObject = dict[str, Any]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length", "authorization",
})
LOG_PARAMETERS = ("tailLines", "sinceSeconds", "sinceTime", "timestamps", "follow", "previous",
                  "limitBytes")
# how often a relay waiting for upstream data checks whether its client is still there
CLIENT_CHECK_SECONDS = 0.25


def _go_list(values: list[str]) -> str:
    return "[" + " ".join(values) + "]"


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _upstream_error(response_code: int, body: str, resource: str, name: str) -> ApiError:
    if response_code == 400:
        return bad_request(body)
    if response_code == 500:
        return internal_error(body)
    if response_code == 404:
        return ApiError(404, "NotFound", body, {"name": name, "kind": resource})
    return ApiError(response_code, "", body, {"name": name, "kind": resource})


class Forwarder:
    """Pod logs and proxies; owns the HTTP client session used to reach pods and kubelets."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service
        self._session: aiohttp.ClientSession | None = None
        self._round_robin = itertools.count()
        self._closing = asyncio.Event()
        self._kubelet_tls: ssl.SSLContext | bool = False

    def verify_kubelets_with(self, ca_path: Path | None) -> None:
        """Verify kubelet serving certificates against this CA; None: do not verify."""
        self._kubelet_tls = (False if ca_path is None
                             else ssl.create_default_context(cafile=str(ca_path)))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        # open relays (followed logs, long proxied answers) end now rather than holding the
        # server's shutdown
        self._closing.set()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _type(self, plural: str) -> ResourceType:
        resource = self.service.types.lookup("", "v1", plural)
        if resource is None:
            raise not_found("", plural, "")
        return resource

    # -- logs -------------------------------------------------------------------------------

    def _log_container(self, pod: JsonObject, requested: str | None) -> str:
        spec = pod.get("spec") or {}
        containers = [str(c.get("name")) for c in spec.get("containers") or []]
        init_containers = [str(c.get("name")) for c in spec.get("initContainers") or []]
        name = name_of(pod)
        if requested:
            if requested not in containers and requested not in init_containers:
                raise bad_request(f"container {requested} is not valid for pod {name}")
            return requested
        if len(containers) == 1:
            return containers[0]
        message = (f"a container name must be specified for pod {name}, choose one of: "
                   f"{_go_list(containers)}")
        if init_containers:
            message += f" or one of the init containers: {_go_list(init_containers)}"
        raise bad_request(message)

    def _check_started(self, pod: JsonObject, container: str, previous: bool) -> None:
        status = pod.get("status") or {}
        statuses = (status.get("containerStatuses") or []) + (
            status.get("initContainerStatuses") or [])
        found = next((s for s in statuses if s.get("name") == container), None)
        name = name_of(pod)
        if not (pod.get("spec") or {}).get("nodeName") or found is None:
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              f"ContainerCreating")
        waiting = (found.get("state") or {}).get("waiting")
        if waiting is not None and not previous and not found.get("lastState"):
            reason = waiting.get("reason") or "ContainerCreating"
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              f"{reason}")

    def _kubelet(self, node_name: str) -> str:
        nodes = self._type("nodes")
        node = self.service.get(nodes, None, node_name)
        status = node.get("status") or {}
        addresses = status.get("addresses") or []
        address = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"),
                       None) or next((a.get("address") for a in addresses), None)
        port = (((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {})
                .get("Port"))
        if not address or not port:
            raise bad_request(f"node {node_name} has no kubelet endpoint (InternalIP and "
                              f"status.daemonEndpoints.kubeletEndpoint.Port)")
        return f"https://{address}:{port}"

    async def pod_log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        pods = self._type("pods")
        pod = self.service.get(pods, namespace, name)
        query = request.rel_url.query
        container = self._log_container(pod, query.get("container"))
        previous = query.get("previous", "false").lower() == "true"
        self._check_started(pod, container, previous)
        base = self._kubelet(str((pod.get("spec") or {}).get("nodeName")))
        parameters = {k: query[k] for k in LOG_PARAMETERS if k in query}
        url = f"{base}/containerLogs/{namespace}/{name}/{container}"
        if parameters:
            url += "?" + urlencode(parameters)
        try:
            upstream = await self._client().get(url, ssl=self._kubelet_tls)
        except aiohttp.ClientError as error:
            raise internal_error(f'Get "{url}": {error}') from error
        async with upstream:
            if not 200 <= upstream.status <= 206:
                body = (await upstream.content.read(4096)).decode(errors="replace")
                raise _upstream_error(upstream.status, body, "pods/log", name)
            response = web.StreamResponse(status=200)
            response.content_type = "text/plain"
            response.enable_chunked_encoding()
            await response.prepare(request)
            await self._relay(request, response, upstream)
            return response

    async def _relay(self, request: web.Request, response: web.StreamResponse,
                     upstream: aiohttp.ClientResponse) -> None:
        """Copy the upstream body to the client as it arrives, until the upstream ends, the
        client leaves or the server stops.

        A followed log of a quiet container sends nothing for a long time, and aiohttp does not
        cancel a handler whose client went away, so the relay checks on its client while it
        waits; leaving closes the upstream connection, which ends the kubelet's stream too.
        """
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while True:
                read = asyncio.ensure_future(upstream.content.readany())
                try:
                    while not read.done():
                        await asyncio.wait({read, closing}, timeout=CLIENT_CHECK_SECONDS,
                                           return_when=asyncio.FIRST_COMPLETED)
                        if not read.done() and (closing.done() or _client_gone(request)):
                            return
                    chunk = read.result()
                except (aiohttp.ClientError, ConnectionResetError, TimeoutError):
                    chunk = b""
                finally:
                    if not read.done():
                        read.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                            await read
                if not chunk:
                    break
                try:
                    await response.write(chunk)
                except (ConnectionResetError, aiohttp.ClientError):
                    return
            if not _client_gone(request):
                with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                    await response.write_eof()
        finally:
            closing.cancel()

    # -- proxies ----------------------------------------------------------------------------

    async def _forward(self, request: web.Request, target: str, tail: str,
                       description: str, tls: ssl.SSLContext | bool = False
                       ) -> web.StreamResponse:
        """Forward to target; an https pod or service target is not verified (as
        kube-apiserver's proxies do), a kubelet is verified as `verify_kubelets_with` says."""
        url = f"{target}/{tail.lstrip('/')}"
        if request.rel_url.raw_query_string:
            url += "?" + request.rel_url.raw_query_string
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read() if request.body_exists else None
        try:
            upstream = await self._client().request(request.method, url, headers=headers,
                                                    data=body, allow_redirects=False,
                                                    ssl=tls)
        except aiohttp.ClientError as error:
            raise ApiError(503, "ServiceUnavailable",
                           f"error trying to reach {description}: {error}") from error
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            await self._relay(request, response, upstream)
            return response

    async def pod_proxy(self, request: web.Request, namespace: str, target: str,
                        tail: str) -> web.StreamResponse:
        scheme, name, port = _split_target(target)
        pod = self.service.get(self._type("pods"), namespace, name)
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise ApiError(503, "ServiceUnavailable",
                           f'pod "{name}" has no IP address yet (phase '
                           f'{(pod.get("status") or {}).get("phase", "Pending")})')
        host = f"{ip}:{port}" if port else str(ip)
        return await self._forward(request, f"{scheme or 'http'}://{host}", tail,
                                   f'pod "{name}"')

    async def node_proxy(self, request: web.Request, target: str, tail: str) -> web.StreamResponse:
        _, name, _ = _split_target(target)
        return await self._forward(request, self._kubelet(name), tail, f'node "{name}"',
                                   self._kubelet_tls)

    def _service_endpoint(self, namespace: str, service: JsonObject,
                          port_spec: str) -> tuple[str, int]:
        name = name_of(service)
        ports = (service.get("spec") or {}).get("ports") or []
        chosen = None
        for port in ports:
            if not port_spec or port.get("name") == port_spec or str(port.get("port")) == port_spec:
                chosen = port
                break
        if chosen is None:
            raise ApiError(503, "ServiceUnavailable",
                           f'no service port "{port_spec}" found for service "{name}"')
        candidates = self._slice_endpoints(namespace, name, chosen) or self._endpoints(
            namespace, name, chosen)
        if not candidates:
            raise ApiError(503, "ServiceUnavailable",
                           f'no endpoints available for service "{name}"')
        return candidates[next(self._round_robin) % len(candidates)]

    def _slice_endpoints(self, namespace: str, service: str,
                         port: JsonObject) -> list[tuple[str, int]]:
        slices_type = self.service.types.lookup("discovery.k8s.io", "v1", "endpointslices")
        if slices_type is None:
            return []
        result: list[tuple[str, int]] = []
        for endpoint_slice in self.service.storage.list_objects(slices_type.storage_key, namespace):
            labels = endpoint_slice["metadata"].get("labels") or {}
            if labels.get("kubernetes.io/service-name") != service:
                continue
            number = next((p.get("port") for p in endpoint_slice.get("ports") or []
                           if (p.get("name") or "") == (port.get("name") or "")), None)
            if number is None:
                continue
            for endpoint in endpoint_slice.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                result.extend((str(a), int(number)) for a in endpoint.get("addresses") or [])
        return result

    def _endpoints(self, namespace: str, service: str, port: JsonObject) -> list[tuple[str, int]]:
        endpoints = self.service.storage.get(("", "endpoints"), namespace, service)
        if endpoints is None:
            return []
        result: list[tuple[str, int]] = []
        for subset in endpoints.get("subsets") or []:
            number = next((p.get("port") for p in subset.get("ports") or []
                           if (p.get("name") or "") == (port.get("name") or "")), None)
            if number is None:
                continue
            result.extend((str(a.get("ip")), int(number)) for a in subset.get("addresses") or [])
        return result

    async def service_proxy(self, request: web.Request, namespace: str, target: str,
                            tail: str) -> web.StreamResponse:
        scheme, name, port_spec = _split_target(target)
        service = self.service.get(self._type("services"), namespace, name)
        address, port = self._service_endpoint(namespace, service, port_spec)
        return await self._forward(request, f"{scheme or 'http'}://{address}:{port}", tail,
                                   f'service "{name}"')


def _split_target(target: str) -> tuple[str, str, str]:
    """`[scheme:]name[:port]` as (scheme, name, port)."""
    parts = target.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", parts[0], ""
