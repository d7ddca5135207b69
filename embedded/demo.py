"""The demo's world: a Temporal dev server, the simulated cluster and a worker, all on loopback.

Where it sits: `llmd-rollout demo` (cli/commands/demo.py) and the CLI tests start a
`DemoEnvironment` and talk to it as a user would: Temporal at `temporal_address`, the cluster
through `kubeconfig`. Nothing here knows about rollouts: it starts processes, waits until each
serves, and stops every one of them by PID, worker first, Temporal last.

The worker is a child process (`python -m worker`), so its environment is its own: KUBECONFIG
points at the simulated cluster and HF_TOKEN holds a fake token, as the worker of a real cluster
would hold the real one; the CLI process never sees either.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from embedded.child_process import ChildProcess
from embedded.clustersim_process import ClusterSimInfo, ClusterSimProcess
from embedded.connect import DEFAULT_TASK_QUEUE, ConnectionSettings, connect
from embedded.temporal import TemporalDevServer

# Obviously fake: the simulated cluster accepts any token; a real one is never needed here.
DEMO_HF_TOKEN = "hf_llmd_demo_token_not_a_real_secret"
POLL_INTERVAL_SECONDS = 0.1


class DemoEnvironmentError(RuntimeError):
    """Something the demo needs did not start; the message says what and where its log is."""


async def wait_until_polled(
    client: Client, namespace: str, task_queue: str, worker: ChildProcess, timeout: timedelta
) -> None:
    """Return once a worker polls `task_queue`'s workflow tasks. Raises DemoEnvironmentError,
    with the end of its log, if `worker` exits first, or when `timeout` has passed."""
    deadline = time.monotonic() + timeout.total_seconds()
    request = DescribeTaskQueueRequest(
        namespace=namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    while time.monotonic() < deadline:
        if worker.pid is None:
            raise DemoEnvironmentError(worker.exited_message())
        described = await client.workflow_service.describe_task_queue(request)
        if described.pollers:
            return
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise DemoEnvironmentError(
        f"the worker did not poll task queue {task_queue} within "
        f"{timeout.total_seconds():.0f}s; see {worker.log_path}"
    )


class DemoEnvironment:
    """Temporal dev server + `clustersim up` + a worker, in `workdir` (logs, database)."""

    def __init__(
        self,
        workdir: Path,
        *,
        time_scale: float = 0.01,
        profile: str = "h200-2node",
        task_queue: str = DEFAULT_TASK_QUEUE,
        worker_startup_timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        self.workdir = workdir
        self.task_queue = task_queue
        self.temporal = TemporalDevServer(workdir / "temporal" / "temporal.db")
        self.cluster = ClusterSimProcess(
            workdir / "clustersim", profile=profile, time_scale=time_scale
        )
        self._worker: ChildProcess | None = None
        self._worker_startup_timeout = worker_startup_timeout

    @property
    def temporal_address(self) -> str:
        return self.temporal.address

    @property
    def namespace(self) -> str:
        return self.temporal.namespace

    @property
    def ui_url(self) -> str:
        return self.temporal.ui_url

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig_path

    @property
    def cluster_info(self) -> ClusterSimInfo:
        return self.cluster.info

    @property
    def worker_log(self) -> Path:
        return self.workdir / "worker.log"

    @property
    def connection(self) -> ConnectionSettings:
        return ConnectionSettings(
            address=self.temporal_address, namespace=self.namespace, task_queue=self.task_queue
        )

    @property
    def worker_pid(self) -> int | None:
        return None if self._worker is None else self._worker.pid

    def worker_problem(self) -> str | None:
        """A sentence if the worker has exited, else None."""
        if self._worker is None or self._worker.pid is not None:
            return None
        return self._worker.exited_message()

    async def __aenter__(self) -> DemoEnvironment:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Temporal and the cluster side by side, then the worker once both serve."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            # Both starts run to their end before anything is stopped: stopping a process whose
            # start is still waiting for it would race that start.
            started = await asyncio.gather(
                self.temporal.start(), self.cluster.start(), return_exceptions=True
            )
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            await self.start_worker()
        except BaseException:
            await self.stop()
            raise

    async def start_worker(self) -> None:
        """Start a worker (again, e.g. after `stop_worker`) and wait until it polls."""
        environment = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HF_TOKEN": DEMO_HF_TOKEN,
            # helm and kubectl live beside the interpreter in the project's .venv.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "LLMD_TASK_QUEUE": self.task_queue,
        }
        self._worker = ChildProcess(
            "the worker", [sys.executable, "-m", "worker"], self.worker_log, env=environment,
            # Orphaned, Temporal and the cluster are stopping beside it: a graceful shutdown
            # would spend its 30 s on activities that can no longer report, and nothing would
            # resume them (the work directory is this demo's own).
            orphan_signal=signal.SIGKILL,
        )
        self._worker.start()
        client = await connect(self.connection)
        await self._wait_until_polled(client)

    async def stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop()

    async def stop(self) -> None:
        """Every process this environment started, worker first; each stop is bounded."""
        problems: list[BaseException] = []
        for stop in (self.stop_worker, self.cluster.stop, self.temporal.stop):
            try:
                await stop()
            except Exception as error:
                problems.append(error)
        if problems:
            raise DemoEnvironmentError("; ".join(str(problem) for problem in problems))

    async def _wait_until_polled(self, client: Client) -> None:
        assert self._worker is not None, "start_worker started it"
        await wait_until_polled(
            client, self.namespace, self.task_queue, self._worker, self._worker_startup_timeout
        )
