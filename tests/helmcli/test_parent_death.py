"""No helm outlives the worker that started it (helmcli/runner.py): a SIGKILLed worker's helm
gets SIGKILL too, so a release it left pending is provably abandoned (helmcli/repair.py).

A stand-in worker runs HelmRunner.run on a fake helm that records its PID and sleeps; the
stand-in is SIGKILLed; the fake helm must be gone within seconds. Both ways of tying helm to
the worker are checked: through setpriv (what the worker uses where util-linux has it, without
forking the threaded worker to run Python in the child) and through a preexec_fn (elsewhere).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helmcli import runner

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"
)

STAND_IN = """
import asyncio, sys
from helmcli import runner
if sys.argv[1] == "preexec":
    runner._SETPRIV = None
asyncio.run(runner.HelmRunner().run(["history", "x"], 120, "helm history x"))
"""


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("way", ["setpriv", "preexec"])
def test_a_killed_workers_helm_dies_with_it(tmp_path: Path, way: str) -> None:
    if way == "setpriv" and runner._SETPRIV is None:
        pytest.skip("no setpriv on this machine")
    pid_file = tmp_path / "helm.pid"
    helm = tmp_path / "helm"
    helm.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 120\n')
    helm.chmod(0o755)
    worker = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, way], cwd=REPO,
        env={**os.environ, "LLMD_HELM": str(helm)},
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert worker.poll() is None, "the stand-in worker exited before helm started"
            assert time.monotonic() < deadline, "helm never started"
            time.sleep(0.05)
        helm_pid = int(pid_file.read_text())
        assert not gone(helm_pid)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not gone(helm_pid):
            assert time.monotonic() < deadline, f"helm (PID {helm_pid}) outlived its worker"
            time.sleep(0.05)
    finally:
        if worker.poll() is None:
            worker.kill()
        if pid_file.exists() and pid_file.read_text().strip():
            pid = int(pid_file.read_text())
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_through_setpriv_helm_is_spawned_without_python_in_the_child() -> None:
    if runner._SETPRIV is None:
        pytest.skip("no setpriv on this machine")
    command, preexec = runner.helm_command("/usr/bin/helm", ["version", "--short"])
    assert command == [runner._SETPRIV, "--pdeathsig", "KILL", "--", "/usr/bin/helm", "version",
                       "--short"]
    assert preexec is None
