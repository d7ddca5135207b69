"""The `istio-proxy` container of a gateway Deployment the gateway controller created.

It serves the Gateway's listener ports on its pod IP through the agent's gateway data plane and
answers Istio's readiness endpoint (`:15021/healthz/ready`). Each request leaves an Envoy-style
access log line.
"""

from __future__ import annotations

import time

from aiohttp import web

from clustersim.agent.meta import labels_of, namespace_of, rfc3339_micro
from clustersim.agent.workloads.process import (
    COMPLETED,
    ExitStatus,
    GatewayHandler,
    Process,
    ProcessContext,
    declared_ports,
)

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
MANAGED_LABEL = "gateway.istio.io/managed"
STATUS_PORT = 15021
METRICS_PORT = 15090


def is_gateway_proxy(pod: dict[str, object], container: dict[str, object]) -> bool:
    labels = labels_of(pod)
    return (
        container.get("name") == "istio-proxy"
        and GATEWAY_NAME_LABEL in labels
        and MANAGED_LABEL in labels
    )


async def _ready(_: web.Request) -> web.Response:
    return web.Response(status=200)


class GatewayProxyProcess(Process):
    def __init__(self, ctx: ProcessContext, gateway: GatewayHandler) -> None:
        super().__init__(ctx)
        self.gateway = gateway
        self.namespace = namespace_of(ctx.pod)
        self.gateway_name = labels_of(ctx.pod)[GATEWAY_NAME_LABEL]

    async def _route(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        response = await self.gateway.handle(request, self.namespace, self.gateway_name)
        took = int((time.monotonic() - started) * 1000)
        agent = request.headers.get("User-Agent", "-")
        self.ctx.log.write(
            f'[{rfc3339_micro()}] "{request.method} {request.path_qs} HTTP/1.1" '
            f'{response.status} - via_upstream - "-" {request.content_length or 0} '
            f'{response.content_length or 0} {took} - "-" "{agent}" '
            f'"-" "{request.host}" "-" outbound|80||{self.gateway_name} - - - -'
        )
        return response

    async def run(self) -> ExitStatus:
        status_app = web.Application()
        status_app.router.add_get("/healthz/ready", _ready)
        status_app.router.add_get("/stats/prometheus", _ready)
        listener_app = web.Application(client_max_size=64 * 1024 * 1024)
        listener_app.router.add_route("*", "/{tail:.*}", self._route)
        ports = [
            p for p in declared_ports(self.ctx.container) if p not in (STATUS_PORT, METRICS_PORT)
        ]
        try:
            await self.serve(status_app, STATUS_PORT)
            for port in ports:
                await self.serve(listener_app, port)
        except OSError as error:
            self.ctx.log.write(f"error\tlistener failed to bind: {error}")
            await self.close_servers()
            return ExitStatus(1, "Error")
        self.ctx.log.write(
            f"{rfc3339_micro()}\tinfo\tEnvoy proxy is ready (gateway "
            f"{self.namespace}/{self.gateway_name}, listeners {ports})"
        )
        await self.wait_stop()
        await self.close_servers()
        return COMPLETED
