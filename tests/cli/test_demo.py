"""`llmd-rollout demo` end to end, as `make demo` runs it: from nothing running to a verified
install and upgrade; every command it prints runs as printed in a fresh shell that has only the
printed `export` lines; then Ctrl-C stops every process it started."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.conftest import STARTER, TIME_SCALE
from worker import SHUTTING_DOWN

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STARTUP_SECONDS = 30
DEMO_TIMEOUT_SECONDS = 240
# The live view's lines of the install's phases that run helm, then of those after them that run
# other activities. The view samples every 0.5 s: a step as short as the dependencies phase
# (0.3 s) may show only as finished ("[step] dependencies ..."), while later phases run; the
# kill must come while activities run, whichever of them the view showed first.
BUSY_PHASES = (
    "] dependencies  ", "] gateway-provider  ", "] infra  ", "] model-service  ", "] model-load  ",
)
HINT_TIMEOUT_SECONDS = 120
STOP_SECONDS = 60
MODEL = "deepseek-ai/DeepSeek-R1-0528"
TARGET = "clustersim/llm-d-wide-ep/wide-ep"
# A fresh terminal: no venv on PATH, no Temporal or cluster settings, not in the repository.
FRESH_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Hint:
    command: str
    code: int
    out: str

    def __str__(self) -> str:
        return f"$ {self.command} -> {self.code}\n{self.out}"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions `text` (the demo's work directory) or that write a file
    under it (the worker: its command line is `python -m worker`, its log is worker.log there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            files = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if text in command or any(f.startswith(f"{text}/") for f in files):
            found.append(int(entry.name))
    return found


def command_lines(pids: list[int]) -> list[str]:
    """`PID: command line` of each, to name a process that outlived the demo."""
    lines = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            command = "(gone)"
        lines.append(f"{pid}: {command.strip()[:300]}")
    return lines


def stop_leftovers(process: subprocess.Popen[bytes], workdir: str | None) -> None:
    """If the demo did not stop by itself, stop it and, by PID, what it started."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)
    for pid in processes_mentioning(workdir) if workdir else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stopped_output(process: subprocess.Popen[bytes]) -> str:
    """What the demo prints from its stop signal to its exit; if it has not exited within
    STOP_SECONDS, fail with that output and every thread's stack (faulthandler, on SIGABRT)."""
    try:
        return process.communicate(timeout=STOP_SECONDS)[0].decode()
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        # A second communicate returns all the output, from the stop signal on.
        printed = process.communicate(timeout=30)[0]
        raise AssertionError(
            f"the demo did not stop within {STOP_SECONDS}s of its stop signal; it printed (with "
            f"its stacks on SIGABRT):\n{printed.decode(errors='replace')}"
        ) from None


def read_until(
    process: subprocess.Popen[bytes], marker: str | tuple[str, ...], deadline: float
) -> str:
    """Read the demo's output until `marker` (or any of several) appears (raw reads: a buffered
    readline would hide lines from select)."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    markers = [m.encode() for m in ((marker,) if isinstance(marker, str) else marker)]
    seen = b""
    while not any(m in seen for m in markers):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} in time; output so far:\n{seen.decode()}")
        ready, _, _ = select.select([descriptor], [], [], 0.5)
        if ready:
            chunk = os.read(descriptor, 65536)
            if not chunk:
                raise AssertionError(f"the demo exited with {process.wait()}:\n{seen.decode()}")
            seen += chunk
    return seen.decode()


# A terminal's Ctrl-C reaches a foreground process whose SIGINT is at its default. A run started
# in the background (`make test &`, a CI runner's job) inherits SIGINT ignored through exec, and
# Python then leaves it ignored (no KeyboardInterrupt): the demo sat through the test's Ctrl-C
# (CI, twice). The demo is started as from a terminal: SIGINT back to its default, then exec.
AS_FROM_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def start_demo() -> subprocess.Popen[bytes]:
    # faulthandler: a demo that hangs shows where, when the test sends it SIGABRT.
    environment = {**os.environ, "NO_COLOR": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen(
        [
            sys.executable, "-c", AS_FROM_A_TERMINAL,
            str(STARTER), "demo", "--time-scale", str(TIME_SCALE),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment,
        start_new_session=True,
    )


@dataclass
class DemoRun:
    process: subprocess.Popen[bytes]
    output: str = ""
    workdir: str = ""


def read_start_up(process: subprocess.Popen[bytes]) -> tuple[str, str]:
    """The demo's output until its processes run, and its work directory."""
    output = read_until(process, "and a worker in", time.monotonic() + STARTUP_SECONDS)
    match = re.search(r"and a worker in (\S+)", output)
    assert match is not None, output
    return output, match.group(1)


@contextlib.contextmanager
def demo_until_ready() -> Iterator[DemoRun]:
    """The demo, started and read up to its "press Ctrl-C"; after the block nothing it started
    is left running, whatever happened (stopped by PID)."""
    demo = DemoRun(start_demo())
    try:
        demo.output, demo.workdir = read_start_up(demo.process)
        demo.output += read_until(
            demo.process, "press Ctrl-C to stop everything",
            time.monotonic() + DEMO_TIMEOUT_SECONDS,
        )
        yield demo
    finally:
        stop_leftovers(demo.process, demo.workdir or None)


def test_demo_installs_verifies_upgrades_and_ctrl_c_stops_everything() -> None:
    hints: list[Hint] = []
    with demo_until_ready() as demo:
        process, workdir = demo.process, demo.workdir
        try:
            assert processes_mentioning(workdir), "the demo's processes should be up"
            hints = run_hints(demo.output, Path(workdir))
        finally:
            # Ctrl-C, as a person would: the demo stops what it started.
            process.send_signal(signal.SIGINT)
            rest = stopped_output(process)
    output = demo.output + rest

    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert "[done] clustersim/llm-d-wide-ep/wide-ep  succeeded" in output
    assert "$ llmd-rollout approve clustersim/llm-d-wide-ep/wide-ep" in output
    models = json.loads(_json_after(output, "/v1/models"))
    assert [model["id"] for model in models["data"]] == [MODEL]
    completion = json.loads(_json_after(output, "/v1/completions"))
    assert completion["usage"]["completion_tokens"] >= 1
    assert "Temporal UI: http://127.0.0.1:" in output
    assert processes_mentioning(workdir) == []
    assert not Path(workdir).exists()
    for expected in (
        "llmd-rollout list", f"llmd-rollout history {TARGET}", f"llmd-rollout status {TARGET}",
        "kubectl get pods -A", "kubectl get --raw", "echo ", f"llmd-rollout approve {TARGET}",
        "llmd-rollout apply -f /",
    ):
        assert any(hint.command.startswith(expected) for hint in hints), (expected, hints)
    for hint in hints:
        if hint.command.startswith("llmd-rollout approve"):
            # The demo approved that gate itself: run again, the command reaches the finished
            # rollout and says so (it runs as printed; the gate is simply gone).
            assert (hint.code, "has already finished" in hint.out) == (1, True), str(hint)
        else:
            assert hint.code == 0, str(hint)
        assert "command not found" not in hint.out and "Traceback" not in hint.out
    models = next(hint for hint in hints if hint.command.startswith("kubectl get --raw"))
    assert MODEL in models.out, str(models)
    completion = next(hint for hint in hints if "/v1/completions" in hint.command)
    assert '"completion_tokens"' in completion.out, str(completion)


def printed_commands(output: str) -> tuple[list[str], list[str]]:
    """The `export` lines of the "try, in another terminal" block, and every command the demo
    printed: `$ ...` lines, the commands of that block and the one in the install's title."""
    lines = output.splitlines()
    start = lines.index("try, in another terminal:")
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        block.append(line.strip())
    exports = [line for line in block if line.startswith("export ")]
    commands = [line for line in block if not line.startswith("export ")]
    commands += [line[2:] for line in lines if line.startswith("$ ")]
    install = next(line for line in lines if line.startswith("1. install: "))
    # The title's rule (a line of ─) follows the command on the same line.
    commands.append(install.removeprefix("1. install: ").rstrip("─ "))
    return exports, commands


def run_hints(output: str, workdir: Path) -> list[Hint]:
    """Run each printed command in a fresh shell: only the printed exports, a bare PATH, a
    directory outside the repository. The install's `apply` runs last (it starts a rollout)."""
    exports, commands = printed_commands(output)
    assert exports, output
    commands.sort(key=lambda command: command.startswith("llmd-rollout apply"))
    elsewhere = workdir.parent
    hints = []
    for command in commands:
        script = "\n".join([*exports, command])
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", script],
            env={"PATH": FRESH_PATH, "HOME": str(elsewhere), "NO_COLOR": "1"},
            cwd=elsewhere, capture_output=True, text=True, timeout=HINT_TIMEOUT_SECONDS,
        )
        hints.append(Hint(command, done.returncode, done.stdout + done.stderr))
    return hints


def _json_after(output: str, path: str) -> str:
    """The pretty-printed JSON document that follows the first `$ kubectl ...{path}` line."""
    lines = output.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("$ ") and f"/proxy{path}" in line
    )
    document: list[str] = []
    for line in lines[start + 1:]:
        document.append(line.rstrip())
        if line.rstrip() == "}":
            break
    return "\n".join(document)


# ~21 s (a whole demo up to its approval, then a SIGTERM): with the long scenarios; the Ctrl-C
# stop above runs in `make test`.
@pytest.mark.long
def test_sigterm_stops_the_demo_and_everything_it_started() -> None:
    # `kill <pid>` or a closed terminal: the demo's children run in sessions of their own and
    # would outlive a demo that just died.
    with demo_until_ready() as demo:
        try:
            assert len(processes_mentioning(demo.workdir)) >= 3, "worker, cluster, Temporal run"
        finally:
            demo.process.send_signal(signal.SIGTERM)
            output = demo.output + stopped_output(demo.process)

    assert demo.process.returncode == 0, output
    assert "stopping the worker, the simulated cluster and Temporal" in output
    assert processes_mentioning(demo.workdir) == []


# ~14 s (a demo up to its install's activities, then SIGKILL): with the long scenarios; that
# children die with their parent runs in `make test` (tests/test_child_process.py).
@pytest.mark.long
def test_a_demo_killed_outright_leaves_nothing_running() -> None:
    # SIGKILL, or the OOM killer: the demo cannot stop its children; the kernel signals them
    # (embedded/child_process.py, PR_SET_PDEATHSIG). Killed while the worker runs the install's
    # activities: a running activity (and its helm) is what could keep a worker alive.
    process = start_demo()
    workdir = None
    try:
        _, workdir = read_start_up(process)
        read_until(process, BUSY_PHASES, time.monotonic() + DEMO_TIMEOUT_SECONDS)
        # The demo itself (it holds its children's logs), the worker, the cluster, Temporal.
        assert len(processes_mentioning(workdir)) >= 4
        process.kill()
        process.wait(timeout=STOP_SECONDS)
        deadline = time.monotonic() + STOP_SECONDS
        while processes_mentioning(workdir) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = processes_mentioning(workdir)
        assert left == [], f"the demo's children outlived it: {command_lines(left)}"
        # Killed, not draining its activities for 30 s against a Temporal that is gone too:
        # under load that drain outlived the wait above. The worker's own line, not the SDK's.
        drained = SHUTTING_DOWN in (Path(workdir) / "worker.log").read_text()
        assert not drained, "the orphaned worker drained its activities instead of stopping"
    finally:
        stop_leftovers(process, workdir)
