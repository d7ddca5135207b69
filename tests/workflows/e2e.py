"""End-to-end plumbing of the workflow tests: worker processes, specs aimed at a clustersim.

The clusters come from the suite's one factory (tests/simcluster.py, at TIME_SCALE here). Every
process started here is stopped by PID (a fixture finalizer or a `with` block). Specs name
the clustersim kubeconfig in `target.kubeconfig`, so in-process and out-of-process workers reach
the same cluster whatever their environment says.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory

from spec.rollout import RolloutSpec
from tests.simcluster import SimCluster
from tests.workflows.specs import Change, demo_spec

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STOP_TIMEOUT = 15.0
# A simulated second lasts 5 ms: a 480 s model load takes 2.4 s, a 300 s image pull 1.5 s.
TIME_SCALE = 0.005
# The HF token the e2e tests hand the worker: it must never show up in a workflow history.
HF_TOKEN = "hf_e2eSecretTokenNeverInHistory0123456789"
# clustersim loads a model in 480 simulated seconds; the rendered startup probe allows the
# spec's model-load budget, so the budget must exceed that (the demo's 3m does not).
MODEL_LOAD_BUDGET = "15m"


def history_bytes(history: WorkflowHistory) -> bytes:
    """Every event of a history as raw protobuf: payloads appear as the bytes they carry
    (the JSON export base64-encodes them, so a text search there would find nothing)."""
    return History(events=history.events).SerializeToString()


def worker_environment() -> dict[str, str]:
    return {
        **os.environ,
        "HF_TOKEN": HF_TOKEN,
        "LLMD_HELM": str(VENV_BIN / "helm"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


class WorkerProcess:
    """`python -m worker` as a process of its own, so a test can SIGKILL it."""

    def __init__(self, address: str, task_queue: str, log_path: Path) -> None:
        self.address = address
        self.task_queue = task_queue
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker", "--address", self.address,
                 "--task-queue", self.task_queue],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=worker_environment(),
            )

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, running activities die mid-flight."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@contextlib.contextmanager
def worker_process(address: str, task_queue: str, log_path: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(address, task_queue, log_path)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def sim_spec(name: str, cluster: SimCluster, *changes: Change) -> RolloutSpec:
    """The demo spec as `name`, aimed at `cluster`, with a model-load budget clustersim fits."""

    def aim(document: dict[str, Any]) -> None:
        document["target"]["kubeconfig"] = str(cluster.kubeconfig)
        document["budgets"]["modelLoad"] = MODEL_LOAD_BUDGET

    return demo_spec(name, aim, *changes)


def small_decode_pods(document: dict[str, Any]) -> None:
    """Two decode groups of two 2-GPU pods (8 GPUs) beside the 8-GPU prefill pod: 16 GPUs, so a
    decode canary (partition 1) fits on h200-2node; half the CPU and memory of the reference
    pods, so four of them share a node with the system pods."""
    decode = document["modelService"]["decode"]
    decode.update(
        {"replicas": 2, "dataParallelLocal": 2, "gpusPerPod": 2, "cpu": "16", "memory": "256Gi"}
    )
    for env in decode["env"]:
        if env["name"] == "DP_SIZE_LOCAL":
            env["value"] = "2"
