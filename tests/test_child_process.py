"""A child we start dies with us: a parent killed with SIGKILL (or by the OOM killer) cannot stop
its children in order, and they must not keep ports and files for someone to find by hand."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from embedded.child_process import ChildProcess, ChildProcessError

REPO = Path(__file__).resolve().parents[1]
WITHIN_SECONDS = 10.0

# A parent that starts a long sleep as our ChildProcess, prints its PID, and waits to be killed.
PARENT = """
import sys, time
from pathlib import Path
from embedded.child_process import ChildProcess
child = ChildProcess("sleeper", ["sleep", "300"], Path(sys.argv[1]))
child.start()
print(child.pid, flush=True)
time.sleep(300)
"""
# The same with a child that ignores SIGTERM (as a draining worker, in effect, does), started
# with SIGKILL as its orphan signal.
PARENT_OF_A_STUBBORN_CHILD = """
import signal, sys, time
from pathlib import Path
from embedded.child_process import ChildProcess
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
child = ChildProcess(
    "stubborn", [sys.executable, "-c", stubborn], Path(sys.argv[1]),
    orphan_signal=signal.SIGKILL,
)
child.start()
print(child.pid, flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's reaper may be slow to collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return []


def ignores_sigterm(pid: int) -> bool:
    """SIGTERM is in the process's ignored set (SigIgn in /proc/PID/status, bit 15 - 1)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    ignored = next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(ignored, 16) & (1 << (signal.SIGTERM - 1)))


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WITHIN_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {WITHIN_SECONDS}s"
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize(
    ("parent_script", "settled"),
    [
        # It becomes the command itself (exec), under the name it was given.
        (PARENT, lambda pid: command_line(pid)[:2] == [b"sleep", b"300"]),
        (PARENT_OF_A_STUBBORN_CHILD, ignores_sigterm),
    ],
    ids=["sigterm-by-default", "sigkill-for-one-that-ignores-sigterm"],
)
def test_a_child_is_terminated_when_the_process_that_started_it_is_killed(
    tmp_path: Path, parent_script: str, settled: Callable[[int], bool]
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_script, str(tmp_path / "child.log")],
        stdout=subprocess.PIPE, cwd=REPO, text=True,
    )
    child: int | None = None
    try:
        assert parent.stdout is not None
        child = pid = int(parent.stdout.readline())
        assert alive(pid)
        until(lambda: settled(pid))
        parent.kill()
        parent.wait(timeout=10)
        until(lambda: not alive(pid))
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_a_command_that_cannot_run_is_a_clear_error_here(tmp_path: Path) -> None:
    child = ChildProcess("nothing", ["no-such-command-here"], tmp_path / "nothing.log")
    with pytest.raises(ChildProcessError, match=r"cannot start nothing \(no-such-command-here\)"):
        child.start()
    assert child.pid is None


async def test_a_child_still_stops_by_pid_and_reports_its_exit(tmp_path: Path) -> None:
    child = ChildProcess("sleeper", ["sleep", "300"], tmp_path / "sleeper.log")
    child.start()
    pid = child.pid
    assert pid is not None and alive(pid)
    await child.stop()
    assert not alive(pid) and child.pid is None
