"""The contract between the kubelet and what runs in a container, and the serving registry.

A Process runs until it exits (returning an ExitStatus) or is asked to stop. Servers bind the pod
IP on loopback; the registry records which pod IPs have a vLLM engine serving, which is what the
simulated endpoint picker looks at, as the real EPP looks at each pod's metrics.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web

from clustersim.agent.faults import Fault
from clustersim.agent.kubelet.logs import ContainerLog
from clustersim.agent.meta import KubeObject
from clustersim.agent.profile import Durations, TimeScale

log = logging.getLogger("clustersim.agent.workloads")


@dataclass(frozen=True)
class ExitStatus:
    code: int
    reason: str
    message: str | None = None


COMPLETED = ExitStatus(0, "Completed")


class GatewayHandler(Protocol):
    async def handle(
        self, request: web.Request, namespace: str, gateway: str
    ) -> web.StreamResponse:
        """Serve one request that reached gateway `namespace/gateway`."""
        ...


@dataclass
class ServingRegistry:
    """Pod IPs whose vLLM engine answers, and their in-flight request counts."""

    serving: dict[str, str] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)

    def set_serving(self, ip: str, model: str) -> None:
        self.serving[ip] = model

    def clear(self, ip: str) -> None:
        self.serving.pop(ip, None)
        self.in_flight.pop(ip, None)

    def is_serving(self, ip: str) -> bool:
        return ip in self.serving


@dataclass
class ProcessContext:
    pod: KubeObject
    container: KubeObject
    pod_ip: str
    env: dict[str, str]
    log: ContainerLog
    scale: TimeScale
    durations: Durations
    registry: ServingRegistry
    http: aiohttp.ClientSession
    gateway: GatewayHandler | None
    faults: list[Fault]
    is_init: bool = False
    is_sidecar: bool = False


class Process(ABC):
    def __init__(self, ctx: ProcessContext) -> None:
        self.ctx = ctx
        self._stopping = asyncio.Event()
        self._runners: list[web.AppRunner] = []

    @abstractmethod
    async def run(self) -> ExitStatus:
        """Run until exit; return how it ended."""

    def stop(self) -> None:
        """SIGTERM: ask the process to exit."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def wait_stop(self, seconds: float | None = None) -> bool:
        """Sleep up to `seconds` (forever when None); True when a stop was requested."""
        if seconds is None:
            await self._stopping.wait()
            return True
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
            return True
        except TimeoutError:
            return False

    async def serve(self, app: web.Application, port: int) -> None:
        """Bind `app` on the pod IP; raises OSError when the port is taken, as a real bind does."""
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.ctx.pod_ip, port, reuse_address=True).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runners.append(runner)

    async def close_servers(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    def fault(self, kind: str) -> Fault | None:
        for fault in self.ctx.faults:
            if fault.kind == kind:
                return fault
        return None


def declared_ports(container: KubeObject) -> list[int]:
    ports: list[int] = []
    for port in container.get("ports") or []:
        if str(port.get("protocol") or "TCP") == "TCP" and port.get("containerPort"):
            ports.append(int(port["containerPort"]))
    return ports
