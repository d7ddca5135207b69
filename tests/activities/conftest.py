"""Fixtures of the activity tests: a simulated cluster (clustersim) over real HTTPS on loopback.

`kube_api` is clustersim's API server alone (objects, watches, apply; no controllers): enough for
apply, snapshot, restore and watch tests. `cluster` is API server plus cluster agent
(`python -m clustersim up`, profile h200-2node, time scale 0.01: a simulated second lasts 10 ms),
for waits that need controllers, kubelets and fake vLLM servers. Both are processes started here
and stopped by PID when the tests using them end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from k8s.client import KubeClient
from spec.rollout import Target

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
TIME_SCALE = 0.01


@dataclass
class SimCluster:
    """A running clustersim: where its kubeconfig is, and how to reach it."""

    process: subprocess.Popen[bytes]
    kubeconfig: Path
    workdir: Path
    info: dict[str, object]

    def target(self, namespace: str) -> Target:
        return Target(cluster="clustersim", namespace=namespace, kubeconfig=str(self.kubeconfig))

    def client(self) -> KubeClient:
        return KubeClient.for_target(self.target("default"))

    def clustersim(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `python -m clustersim ARGS` against this cluster (e.g. `fault add ...`)."""
        return subprocess.run(
            [sys.executable, "-m", "clustersim", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )

    def fault(self, kind: str, *args: str) -> None:
        """Inject a cluster fault through the agent (`fault KIND ARGS`), or `clear` them."""
        admin = str(self.info["admin_url"])
        done = self.clustersim("fault", kind, "--admin", admin, *args)
        assert done.returncode == 0, done.stderr

    def api_fault(self, *args: str) -> None:
        """Add an API fault rule (`fault api add ARGS`, bounded to two minutes unless ARGS bound
        it), or `clear` them all, or `compact` the watch history."""
        if args in (("clear",), ("compact",)):
            action = list(args)
        else:
            bounded = "--count" in args or "--duration" in args
            action = ["add", *args, *([] if bounded else ["--duration", "120"])]
        done = self.clustersim("fault", "api", "--kubeconfig", str(self.kubeconfig), *action)
        assert done.returncode == 0, done.stderr


def _start(command: list[str], workdir: Path, kubeconfig: Path, info: Path | None) -> SimCluster:
    log = (workdir / "clustersim.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "clustersim", *command],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    wanted = [kubeconfig] + ([info] if info else [])
    while not all(p.is_file() and p.stat().st_size for p in wanted):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            text = (workdir / "clustersim.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"clustersim did not start ({' '.join(command)}):\n{text}")
        time.sleep(0.1)
    details = json.loads(info.read_text()) if info else {}
    return SimCluster(process, kubeconfig, workdir, details)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    workdir = tmp_path_factory.mktemp("kube-api")
    kubeconfig = workdir / "kubeconfig"
    command = [
        "serve",
        "--port",
        "0",
        "--kubeconfig-out",
        str(kubeconfig),
        "--data-dir",
        str(workdir / "data"),
    ]
    sim = _start(command, workdir, kubeconfig, None)
    yield sim
    _stop(sim.process)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    kubeconfig = workdir / "kubeconfig"
    info = workdir / "info.json"
    command = [
        "up",
        "--profile",
        "h200-2node",
        "--time-scale",
        str(TIME_SCALE),
        "--kubeconfig-out",
        str(kubeconfig),
        "--info-out",
        str(info),
    ]
    sim = _start(command, workdir, kubeconfig, info)
    yield sim
    _stop(sim.process)
