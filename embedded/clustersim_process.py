"""The simulated cluster as a child process: `python -m clustersim up ...`, stopped by PID.

Where it sits: the demo (embedded.demo) and the tests run the simulated cluster through here. The
product never imports clustersim: it runs it, as a user would, and reads what `up` writes once it
serves: the kubeconfig (`--kubeconfig-out`) and a JSON info file (`--info-out`: the API URL, the
kubeconfig path and the agent's admin URL, which fault injection talks to).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from embedded.child_process import ChildProcess

POLL_INTERVAL_SECONDS = 0.05
DEFAULT_PROFILE = "h200-2node"


class ClusterSimError(RuntimeError):
    """The simulated cluster could not be started; the message says why."""


@dataclass(frozen=True)
class ClusterSimInfo:
    """What `clustersim up` reports once it serves."""

    api_url: str
    kubeconfig: Path
    admin_url: str
    profile: str
    time_scale: float


class ClusterSimProcess:
    """One `python -m clustersim up` process, its files in a work directory of its own."""

    def __init__(
        self,
        workdir: Path,
        *,
        profile: str = DEFAULT_PROFILE,
        time_scale: float = 0.01,
        python: str = sys.executable,
        startup_timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        self.workdir = workdir
        self._startup_timeout = startup_timeout
        self._info: ClusterSimInfo | None = None
        self._child = ChildProcess(
            "the simulated cluster",
            [
                python, "-m", "clustersim", "up",
                "--profile", profile,
                "--time-scale", str(time_scale),
                "--kubeconfig-out", str(self.kubeconfig_path),
                "--info-out", str(self.info_path),
                "--data-dir", str(workdir / "apiserver"),
            ],
            workdir / "clustersim.log",
        )

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def info_path(self) -> Path:
        return self.workdir / "clustersim.json"

    @property
    def log_path(self) -> Path:
        return self._child.log_path

    @property
    def info(self) -> ClusterSimInfo:
        if self._info is None:
            raise ClusterSimError("the simulated cluster has not been started")
        return self._info

    @property
    def pid(self) -> int | None:
        return self._child.pid

    async def __aenter__(self) -> ClusterSimProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> ClusterSimInfo:
        """Start it and wait (bounded) until it has written its info file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.info_path.unlink(missing_ok=True)
        self._child.start()
        try:
            self._info = await self._wait_for_info()
        except BaseException:
            await self.stop()
            raise
        return self._info

    async def stop(self) -> None:
        await self._child.stop()

    async def _wait_for_info(self) -> ClusterSimInfo:
        deadline = time.monotonic() + self._startup_timeout.total_seconds()
        while time.monotonic() < deadline:
            if self._child.pid is None:
                raise ClusterSimError(self._child.exited_message())
            if self.info_path.is_file():
                return _parse_info(json.loads(self.info_path.read_text(encoding="utf-8")))
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
        raise ClusterSimError(
            f"the simulated cluster did not come up within "
            f"{self._startup_timeout.total_seconds():.0f}s; see its log {self.log_path}"
        )


def _parse_info(data: dict[str, Any]) -> ClusterSimInfo:
    return ClusterSimInfo(
        api_url=str(data["api_url"]),
        kubeconfig=Path(str(data["kubeconfig"])),
        admin_url=str(data["admin_url"]),
        profile=str(data.get("profile", "")),
        time_scale=float(data.get("time_scale", 1.0)),
    )
