"""One container of one pod across its restarts: state, last state, restart count, logs, probes.

`status()` renders the v1.ContainerStatus the kubelet reports.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from clustersim.agent.kubelet.images import image_id
from clustersim.agent.kubelet.logs import ContainerLog
from clustersim.agent.meta import KubeObject, rfc3339
from clustersim.agent.workloads.process import ExitStatus, Process


class ContainerRuntime:
    def __init__(self, spec: KubeObject, *, init: bool, waiting_reason: str) -> None:
        self.spec = spec
        self.name = str(spec.get("name"))
        self.is_init = init
        self.is_sidecar = init and spec.get("restartPolicy") == "Always"
        self.state: KubeObject = {"waiting": {"reason": waiting_reason}}
        self.last_state: KubeObject = {}
        self.restart_count = 0
        self.started_once = False
        self.completed = False
        self.image_ref: str | None = None
        self.container_id: str | None = None
        self.log: ContainerLog | None = None
        self.previous_log: ContainerLog | None = None
        self.process: Process | None = None
        self.process_task: asyncio.Task[ExitStatus] | None = None
        self.probe_tasks: list[asyncio.Task[None]] = []
        self.startup_ok = True
        self.readiness_ok = True
        self.kill_reason: str | None = None
        self.kill_event = asyncio.Event()
        self.started_event = asyncio.Event()
        self.crash_step = 0
        self.pull_step = 0
        self.run_started = 0.0

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def started(self) -> bool:
        return self.running and self.startup_ok

    @property
    def ready(self) -> bool:
        return self.running and self.startup_ok and self.readiness_ok

    def wait(self, reason: str, message: str | None = None) -> None:
        waiting: KubeObject = {"reason": reason}
        if message:
            waiting["message"] = message
        self.state = {"waiting": waiting}

    def begin_instance(self, probes: dict[str, Any]) -> ContainerLog:
        """A new instance starts: previous state and log move aside."""
        if "terminated" in self.state:
            self.last_state = self.state
        if self.started_once:
            self.restart_count += 1
        self.started_once = True
        if self.log is not None:
            self.previous_log = self.log
        self.log = ContainerLog()
        self.container_id = f"containerd://{secrets.token_hex(32)}"
        self.state = {"running": {"startedAt": rfc3339()}}
        self.startup_ok = "startupProbe" not in probes
        self.readiness_ok = "readinessProbe" not in probes
        self.kill_reason = None
        self.kill_event = asyncio.Event()
        self.run_started = time.monotonic()
        if self.startup_ok:
            self.started_event.set()
        return self.log

    def end_instance(self, status: ExitStatus) -> None:
        started_at = (self.state.get("running") or {}).get("startedAt") or rfc3339()
        terminated: KubeObject = {
            "exitCode": status.code,
            "reason": status.reason,
            "startedAt": started_at,
            "finishedAt": rfc3339(),
            "containerID": self.container_id,
        }
        if status.message:
            terminated["message"] = status.message
        self.state = {"terminated": terminated}
        self.startup_ok = self.readiness_ok = False
        self.started_event.clear()
        if self.log is not None:
            self.log.close()
        for task in self.probe_tasks:
            task.cancel()
        self.probe_tasks = []
        self.process = None

    def lose_instance(self) -> None:
        """The node went away: a running instance is gone as `Unknown`, exit code 255."""
        if self.running or self.process_task is not None:
            self.end_instance(ExitStatus(255, "Unknown"))

    def status(self) -> KubeObject:
        image = str(self.spec.get("image") or "")
        status: KubeObject = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": image,
            "imageID": image_id(image) if self.image_ref else "",
            "started": self.started,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status
