"""The simulated cluster as a child process: `python -m clustersim up ...`, stopped by PID.

Where it sits: the demo (embedded.demo), the tests (tests/simcluster.py) and the benchmarks run
the simulated cluster through here and nowhere else. The product never imports clustersim (a
distribution of its own, clustersim/): it runs it, as a user would, and reads what it writes once
it serves: the kubeconfig (`--kubeconfig-out`) and, for `up`, a JSON info file (`--info-out`: the
API URL, the kubeconfig path and the agent's admin URL, which cluster faults go to). With
`agent=False` only the API server runs (`clustersim serve`): objects, watches and API faults, no
nodes, controllers or kubelets.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from embedded.child_process import ChildProcess

POLL_INTERVAL_SECONDS = 0.05
DEFAULT_PROFILE = "h200-2node"
FAULT_COMMAND_TIMEOUT_SECONDS = 30.0


class ClusterSimError(RuntimeError):
    """The simulated cluster could not be started or refused a command; the message says why."""


@dataclass(frozen=True)
class ClusterSimInfo:
    """What the simulated cluster reports once it serves.

    `admin_url` is the cluster agent's admin endpoint (cluster faults); None when only the API
    server runs. `profile` is empty and `time_scale` 1.0 then: nothing is simulated in time.
    """

    api_url: str
    kubeconfig: Path
    admin_url: str | None
    profile: str
    time_scale: float


class ClusterSimProcess:
    """One `python -m clustersim up` (or `serve`) process, its files in a work directory of its
    own: the kubeconfig, the info file, the API server's data directory and the log."""

    def __init__(
        self,
        workdir: Path,
        *,
        profile: str = DEFAULT_PROFILE,
        time_scale: float = 0.01,
        agent: bool = True,
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
        startup_timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        self.workdir = workdir
        self.agent = agent
        self._python = python
        self._startup_timeout = startup_timeout
        self._info: ClusterSimInfo | None = None
        if agent:
            command = [
                "up", "--profile", profile, "--time-scale", str(time_scale),
                "--info-out", str(self.info_path),
            ]
        else:
            command = ["serve", "--port", "0"]
        self._child = ChildProcess(
            "the simulated cluster",
            self.clustersim_command(
                *command,
                "--kubeconfig-out", str(self.kubeconfig_path),
                "--data-dir", str(workdir / "apiserver"),
                *extra_args,
            ),
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
        """Start it and wait (bounded) until it serves: its info file (or, API server alone, its
        kubeconfig) is written once it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.info_path.unlink(missing_ok=True)
        self.kubeconfig_path.unlink(missing_ok=True)
        self._child.start()
        try:
            self._info = await self._wait_until_serving()
        except BaseException:
            await self.stop()
            raise
        return self._info

    async def stop(self) -> None:
        await self._child.stop()

    def clustersim_command(self, *args: str) -> list[str]:
        """The argv of `python -m clustersim ARGS` with this process's interpreter."""
        return [self._python, "-m", "clustersim", *args]

    def fault(self, kind: str, *args: str) -> str:
        """`python -m clustersim fault KIND ARGS` against this cluster; returns its output.

        `api` faults (`add`, `list`, `clear`, `compact`) go to the API server through the
        kubeconfig; every other kind (`crash`, `image-pull`, `capacity`, ..., `list`, `clear`)
        to the agent's admin endpoint. Blocks for at most 30 s: async callers use a thread.
        """
        if kind == "api":
            target = ["--kubeconfig", str(self.kubeconfig_path)]
        elif self.info.admin_url is not None:
            target = ["--admin", self.info.admin_url]
        else:
            raise ClusterSimError(
                f"cluster fault {kind!r} needs the cluster agent; this cluster runs the API "
                f"server alone"
            )
        command = self.clustersim_command("fault", kind, *target, *args)
        done = subprocess.run(
            command, capture_output=True, text=True, check=False,
            timeout=FAULT_COMMAND_TIMEOUT_SECONDS,
        )
        if done.returncode != 0:
            raise ClusterSimError(
                f"clustersim fault {kind} {' '.join(args)} exited with {done.returncode}: "
                f"{done.stderr.strip()}"
            )
        return done.stdout

    async def _wait_until_serving(self) -> ClusterSimInfo:
        deadline = time.monotonic() + self._startup_timeout.total_seconds()
        ready = self.info_path if self.agent else self.kubeconfig_path
        while time.monotonic() < deadline:
            if self._child.pid is None:
                raise ClusterSimError(self._child.exited_message())
            # Both files are written whole (a rename), so one that exists is complete.
            if ready.is_file():
                if self.agent:
                    return _parse_info(json.loads(self.info_path.read_text(encoding="utf-8")))
                return self._api_server_info()
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
        raise ClusterSimError(
            f"the simulated cluster did not come up within "
            f"{self._startup_timeout.total_seconds():.0f}s; see its log {self.log_path}"
        )

    def _api_server_info(self) -> ClusterSimInfo:
        config = yaml.safe_load(self.kubeconfig_path.read_text(encoding="utf-8"))
        return ClusterSimInfo(
            api_url=str(config["clusters"][0]["cluster"]["server"]),
            kubeconfig=self.kubeconfig_path,
            admin_url=None,
            profile="",
            time_scale=1.0,
        )


def _parse_info(data: dict[str, Any]) -> ClusterSimInfo:
    return ClusterSimInfo(
        api_url=str(data["api_url"]),
        kubeconfig=Path(str(data["kubeconfig"])),
        admin_url=str(data["admin_url"]),
        profile=str(data.get("profile", "")),
        time_scale=float(data.get("time_scale", 1.0)),
    )
