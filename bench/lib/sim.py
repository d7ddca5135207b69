"""clustersim for the benchmarks: started as a process of its own, stopped by PID."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 120


@dataclass(frozen=True)
class Sim:
    kubeconfig: Path
    admin_url: str
    pid: int


@contextlib.contextmanager
def clustersim(workdir: Path, profile: str, scale: float) -> Iterator[Sim]:
    """`python -m clustersim up` with `profile` (a built-in name or a file) at `scale`."""
    kubeconfig, info = workdir / "kubeconfig", workdir / "info.json"
    with (workdir / "clustersim.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "clustersim", "up", "--profile", profile,
             "--time-scale", str(scale), "--kubeconfig-out", str(kubeconfig),
             "--info-out", str(info), "--data-dir", str(workdir / "data")],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            while not (info.is_file() and info.stat().st_size):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"clustersim did not start; see {workdir}/clustersim.log")
                time.sleep(0.1)
            yield Sim(kubeconfig, str(json.loads(info.read_text())["admin_url"]), process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
