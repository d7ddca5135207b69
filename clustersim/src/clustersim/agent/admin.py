"""The agent's admin HTTP endpoint (loopback only): faults and cluster facts at run time.

GET /healthz; GET /info (profile, time scale, nodes with their IPs and kubelet ports);
GET /faults; POST /faults (one fault, a list, or `faults: [...]`, as YAML or JSON) -> 201 with the
created faults and their ids; DELETE /faults (all); DELETE /faults/{id}.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from aiohttp import web

from clustersim.agent.faults import FaultError, parse_fault_document
from clustersim.listeners import listen_on

if TYPE_CHECKING:
    from clustersim.agent.agent import ClusterAgent


class AdminServer:
    def __init__(self, agent: ClusterAgent) -> None:
        self.agent = agent
        self._runner: web.AppRunner | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/info", self.info)
        app.router.add_get("/faults", self.list_faults)
        app.router.add_post("/faults", self.add_faults)
        app.router.add_delete("/faults", self.clear_faults)
        app.router.add_delete("/faults/{fault_id}", self.remove_fault)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def info(self, _: web.Request) -> web.Response:
        return web.json_response(self.agent.describe())

    async def list_faults(self, _: web.Request) -> web.Response:
        return web.json_response({"faults": [f.as_dict() for f in self.agent.faults.all()]})

    async def add_faults(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            specs = parse_fault_document(text)
            created = [self.agent.faults.add(spec) for spec in specs]
        except FaultError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"faults": [f.as_dict() for f in created]}, status=201)

    async def clear_faults(self, _: web.Request) -> web.Response:
        self.agent.faults.clear()
        return web.json_response({"faults": []})

    async def remove_fault(self, request: web.Request) -> web.Response:
        fault_id = request.match_info["fault_id"]
        if not self.agent.faults.remove(fault_id):
            return web.json_response({"error": f"no fault with id {fault_id!r}"}, status=404)
        return web.json_response({"removed": fault_id})

    def reserve(self, host: str, port: int) -> None:
        """Bind the port first thing at agent start, so a busy --admin-port fails at once."""
        self._socket = listen_on(host, port, "agent admin endpoint (--admin-port)")

    async def start(self, host: str, port: int) -> None:
        sock = self._socket or listen_on(host, port, "agent admin endpoint (--admin-port)")
        self._socket = None
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        self.url = f"http://{host}:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
