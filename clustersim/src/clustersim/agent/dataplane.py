"""The gateway data path: what the Istio-like gateway pod does with a request.

Routing follows the Gateway API: HTTPRoutes attached to the gateway, hostnames, then the most
specific path match (Exact, then the longest PathPrefix), method and headers. A Service backend
is load-balanced over its ready endpoints; an InferencePool backend goes through an EPP-like pick,
as llm-d's pd-profile-handler (threshold 0) does: a serving prefill pod and a serving decode pod
(least in-flight requests), the request sent to the decode pod's port with
`x-prefiller-host-port` so its routing sidecar runs the prefill remotely, then decodes locally.

Errors are the ones the real gateway gives: 404 with no matching route, 500 "fault filter abort"
when the route's backend does not resolve (e.g. a missing InferencePool), 503 "no healthy
upstream" when no pod of the pool serves (or the EPP has no ready endpoint), 503 "upstream connect
error ..." when the picked pod refuses the connection, 400 "model not found in request body".
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from typing import Any

import aiohttp
from aiohttp import web

from clustersim.agent.context import AgentContext
from clustersim.agent.controllers.common import is_ready
from clustersim.agent.controllers.gateway import GatewayController, _route_parents
from clustersim.agent.meta import KubeObject, is_terminating, labels_of, namespace_of
from clustersim.agent.selectors import map_selector_matches
from clustersim.agent.workloads.sidecar import PREFILLER_HEADER

ROLE_LABEL = "llm-d.ai/role"
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
}


def _envoy(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, headers={"server": "istio-envoy"})


def _path_score(match: KubeObject, path: str) -> int | None:
    """How specific a path match is for `path` (None: no match). Exact beats any prefix."""
    spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind = spec.get("type", "PathPrefix")
    value = str(spec.get("value", "/"))
    if kind == "Exact":
        return 100000 + len(value) if path == value else None
    if kind == "RegularExpression":
        return len(value) if re.fullmatch(value, path) else None
    prefix = value.rstrip("/")
    if prefix == "" or path == prefix or path.startswith(prefix + "/"):
        return len(prefix)
    return None


def _matches(match: KubeObject, request: web.Request) -> int | None:
    score = _path_score(match, request.path)
    if score is None:
        return None
    method = match.get("method")
    if method and method != request.method:
        return None
    for header in match.get("headers") or []:
        if request.headers.get(str(header.get("name"))) != header.get("value"):
            return None
    return score


def _host_matches(route: KubeObject, host: str) -> bool:
    hostnames = (route.get("spec") or {}).get("hostnames") or []
    if not hostnames:
        return True
    bare = host.split(":", 1)[0]
    for hostname in hostnames:
        if hostname == bare or (hostname.startswith("*.") and bare.endswith(hostname[1:])):
            return True
    return False


class GatewayDataPlane:
    def __init__(self, ctx: AgentContext, gateways: GatewayController) -> None:
        self.ctx = ctx
        self.gateways = gateways
        self._turn = itertools.count()

    def _route_rule(
        self, request: web.Request, namespace: str, gateway: str
    ) -> tuple[KubeObject, KubeObject] | None:
        best: tuple[int, str, KubeObject, KubeObject] | None = None
        for route in self.ctx.informers.httproutes.items():
            if is_terminating(route) or not _host_matches(route, request.host):
                continue
            if not any(ns == namespace and n == gateway for ns, n, _ in _route_parents(route)):
                continue
            created = str((route.get("metadata") or {}).get("creationTimestamp") or "")
            for rule in (route.get("spec") or {}).get("rules") or []:
                for match in rule.get("matches") or [{}]:
                    score = _matches(match, request)
                    if score is None:
                        continue
                    if best is None or score > best[0] or (score == best[0] and created < best[1]):
                        best = (score, created, route, rule)
        return None if best is None else (best[2], best[3])

    async def handle(
        self, request: web.Request, namespace: str, gateway: str
    ) -> web.StreamResponse:
        if self.ctx.faults.take_gateway() is not None:
            return _envoy(503, "no healthy upstream")
        found = self._route_rule(request, namespace, gateway)
        if found is None:
            return web.Response(status=404, headers={"server": "istio-envoy"})
        route, rule = found
        refs = [r for r in rule.get("backendRefs") or [] if int(r.get("weight", 1)) > 0]
        if not refs:
            return _envoy(500, "fault filter abort")
        ref = random.choices(refs, weights=[int(r.get("weight", 1)) for r in refs])[0]
        if self.gateways.resolve_backend(route, ref) is not None:
            return _envoy(500, "fault filter abort")
        body = await request.read()
        backend_namespace = str(ref.get("namespace") or namespace_of(route))
        if ref.get("kind") == "InferencePool":
            return await self._to_pool(request, body, backend_namespace, str(ref.get("name")))
        return await self._to_service(request, body, backend_namespace, ref)

    def _ready_addresses(
        self, namespace: str, service: str, port: Any = None
    ) -> list[tuple[str, int]]:
        endpoints = self.ctx.informers.endpoints.get(namespace, service)
        found = []
        for subset in (endpoints or {}).get("subsets") or []:
            ports = subset.get("ports") or []
            chosen = next(
                (
                    p
                    for p in ports
                    if port is None or p.get("name") == port or p.get("port") == port
                ),
                ports[0] if ports else None,
            )
            for address in subset.get("addresses") or []:
                found.append((str(address["ip"]), int((chosen or {}).get("port") or 0)))
        return found

    async def _to_service(
        self, request: web.Request, body: bytes, namespace: str, ref: KubeObject
    ) -> web.StreamResponse:
        service = self.ctx.informers.services.get(namespace, str(ref.get("name")))
        port = ref.get("port")
        target = None
        for service_port in ((service or {}).get("spec") or {}).get("ports") or []:
            if port is None or service_port.get("port") == port:
                target = service_port.get("name") or service_port.get("targetPort")
                break
        addresses = self._ready_addresses(namespace, str(ref.get("name")), target)
        if not addresses:
            return _envoy(503, "no healthy upstream")
        ip, target_port = addresses[next(self._turn) % len(addresses)]
        return await self._forward(request, body, ip, target_port, {})

    def _pool_pods(self, pool: KubeObject) -> list[KubeObject]:
        selector = (pool.get("spec") or {}).get("selector") or {}
        return [
            pod
            for pod in self.ctx.informers.pods.items(namespace_of(pool))
            if map_selector_matches(selector, labels_of(pod))
            and is_ready(pod)
            and not is_terminating(pod)
            and (pod.get("status") or {}).get("podIP")
        ]

    def _least_loaded(self, pods: list[KubeObject]) -> KubeObject | None:
        if not pods:
            return None
        turn = next(self._turn)
        in_flight = self.ctx.registry.in_flight
        return min(
            enumerate(pods),
            key=lambda item: (
                in_flight.get(item[1]["status"]["podIP"], 0),
                (item[0] - turn) % len(pods),
            ),
        )[1]

    async def _to_pool(
        self, request: web.Request, body: bytes, namespace: str, name: str
    ) -> web.StreamResponse:
        pool = self.ctx.informers.pools.get(namespace, name)
        if pool is None:
            return _envoy(500, "fault filter abort")
        spec = pool.get("spec") or {}
        extension = str((spec.get("extensionRef") or {}).get("name") or "")
        if not self._ready_addresses(namespace, extension):
            return _envoy(503, "no healthy upstream")
        if request.method == "POST" and request.path.startswith("/v1/"):
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or "model" not in payload:
                return _envoy(400, "model not found in request body")
        pods = self._pool_pods(pool)
        serving = [p for p in pods if self.ctx.registry.is_serving(p["status"]["podIP"])]
        roles = {labels_of(p).get(ROLE_LABEL) for p in pods}
        if roles & {"prefill", "decode"}:
            decode = [p for p in serving if labels_of(p).get(ROLE_LABEL) in ("decode", "both")]
            prefill = [p for p in serving if labels_of(p).get(ROLE_LABEL) == "prefill"]
        else:
            decode, prefill = serving, []
        target = self._least_loaded(decode)
        if target is None:
            return _envoy(503, "no healthy upstream")
        port = int(spec.get("targetPortNumber") or 8000)
        headers = {"x-gateway-destination-endpoint": f"{target['status']['podIP']}:{port}"}
        prefiller = self._least_loaded(prefill)
        if prefiller is not None:
            headers[PREFILLER_HEADER] = f"{prefiller['status']['podIP']}:{port}"
        return await self._forward(request, body, target["status"]["podIP"], port, headers)

    async def _forward(
        self, request: web.Request, body: bytes, ip: str, port: int, extra: dict[str, str]
    ) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers.update(extra)
        url = f"http://{ip}:{port}{request.path_qs}"
        registry = self.ctx.registry
        registry.in_flight[ip] = registry.in_flight.get(ip, 0) + 1
        started = time.monotonic()
        try:
            async with self.ctx.http.request(
                request.method,
                url,
                headers=headers,
                data=body,
                timeout=aiohttp.ClientTimeout(total=600),
            ) as upstream:
                payload = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
                out["server"] = "istio-envoy"
                out["x-envoy-upstream-service-time"] = str(int((time.monotonic() - started) * 1000))
                return web.Response(status=upstream.status, body=payload, headers=out)
        except aiohttp.ClientError:
            return _envoy(
                503,
                "upstream connect error or disconnect/reset before headers. "
                "reset reason: connection failure",
            )
        finally:
            registry.in_flight[ip] = max(0, registry.in_flight.get(ip, 1) - 1)
