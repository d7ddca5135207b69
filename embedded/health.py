"""The worker's health endpoint: `/healthz` (alive) and `/readyz` (polling its task queue).

Where it sits: worker.py starts it on `--health-port` before connecting, marks it ready once the
worker runs and not ready as soon as a shutdown begins, so Kubernetes (the chart's probes) and
compose's health check stop sending it new work while running activities finish. Liveness answers
from the event loop itself: a loop blocked for longer than the probe's timeout fails it.
"""

from __future__ import annotations

from aiohttp import web


class HealthServer:
    """A tiny HTTP server on `host:port`; `ready` flips /readyz between 200 and 503."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self.ready = False
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._alive)
        app.router.add_get("/readyz", self._readiness)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _alive(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readiness(self, _: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")
