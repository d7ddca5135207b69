"""Containers the agent knows nothing special about, the EPP, and run-to-completion init containers.

A generic long-running container answers HTTP 200 on every TCP port it declares, so httpGet,
tcpSocket and grpc (checked as TCP) probes pass once it runs. The EPP additionally listens on the
`--grpcPort` / `--grpcHealthPort` it is given.
"""

from __future__ import annotations

import json
import re
import time

from aiohttp import web

from clustersim.agent.workloads.process import (
    COMPLETED,
    ExitStatus,
    Process,
    ProcessContext,
    declared_ports,
)
from clustersim.agent.workloads.vllm import command_text


def epp_ports(container: dict[str, object]) -> list[int] | None:
    """The EPP's gRPC ports from its args, or None when the container is not an EPP."""
    text = command_text(container)
    found = [int(p) for p in re.findall(r"--grpc(?:Health)?Port[= ](\d+)", text)]
    return found or None


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


class GenericProcess(Process):
    """Serve on the declared ports until stopped."""

    def __init__(self, ctx: ProcessContext, extra_ports: list[int] | None = None) -> None:
        super().__init__(ctx)
        self.ports = sorted(set(declared_ports(ctx.container)) | set(extra_ports or []))
        self.is_epp = extra_ports is not None

    def _log(self, message: str, **fields: object) -> None:
        if self.is_epp:
            entry = {
                "level": "info",
                "ts": round(time.time(), 6),
                "logger": "setup",
                "msg": message,
            }
            entry.update(fields)
            self.ctx.log.write(json.dumps(entry))
        else:
            self.ctx.log.write(message)

    async def run(self) -> ExitStatus:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _ok)
        for port in self.ports:
            try:
                await self.serve(app, port)
            except OSError as error:
                self._log("failed to listen", port=port, error=str(error))
                await self.close_servers()
                return ExitStatus(1, "Error")
            self._log("Starting server", port=port)
        await self.wait_stop()
        await self.close_servers()
        return COMPLETED


class InitProcess(Process):
    """A regular init container: work for the profile's init duration, then exit 0."""

    async def run(self) -> ExitStatus:
        self.ctx.log.write(f"{self.ctx.container.get('name')}: initializing")
        if await self.wait_stop(self.ctx.scale.delay(self.ctx.durations.init_container_run)):
            return ExitStatus(143, "Error")
        self.ctx.log.write(f"{self.ctx.container.get('name')}: done")
        return COMPLETED
