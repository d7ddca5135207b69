"""`llmd-rollout demo` end to end, as `make demo` runs it: from nothing running to a verified
install and upgrade, then Ctrl-C stops every process it started."""

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
from pathlib import Path

import pytest

from tests.cli.conftest import STARTER, TIME_SCALE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STARTUP_SECONDS = 30
DEMO_TIMEOUT_SECONDS = 240
MODEL = "deepseek-ai/DeepSeek-R1-0528"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions `text` (the demo's work directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(int(entry.name))
    return found


def stop_leftovers(process: subprocess.Popen[bytes], workdir: str | None) -> None:
    """If the demo did not stop by itself, stop it and, by PID, what it started."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)
    for pid in processes_mentioning(workdir) if workdir else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def read_until(process: subprocess.Popen[bytes], marker: str, deadline: float) -> str:
    """Read the demo's output until `marker` appears (raw reads: a buffered readline would hide
    lines from select)."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    seen = b""
    while marker.encode() not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} in time; output so far:\n{seen.decode()}")
        ready, _, _ = select.select([descriptor], [], [], 0.5)
        if ready:
            chunk = os.read(descriptor, 65536)
            if not chunk:
                raise AssertionError(f"the demo exited with {process.wait()}:\n{seen.decode()}")
            seen += chunk
    return seen.decode()


def test_demo_installs_verifies_upgrades_and_ctrl_c_stops_everything() -> None:
    environment = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, str(STARTER), "demo", "--time-scale", str(TIME_SCALE)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment,
        start_new_session=True,
    )
    workdir: str | None = None
    try:
        output = read_until(process, "and a worker in", time.monotonic() + STARTUP_SECONDS)
        match = re.search(r"and a worker in (\S+)", output)
        assert match is not None, output
        workdir = match.group(1)
        try:
            output += read_until(
                process, "press Ctrl-C to stop everything",
                time.monotonic() + DEMO_TIMEOUT_SECONDS,
            )
            assert processes_mentioning(workdir), "the demo's processes should be up"
        finally:
            # Ctrl-C, as a person would: the demo stops what it started.
            process.send_signal(signal.SIGINT)
            rest = process.communicate(timeout=60)[0].decode()
    finally:
        stop_leftovers(process, workdir)
    output += rest

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


def _json_after(output: str, path: str) -> str:
    """The pretty-printed JSON document that follows the first `$ curl ...{path}` line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"$ curl -s $GATEWAY{path}"))
    document: list[str] = []
    for line in lines[start + 1:]:
        document.append(line.rstrip())
        if line.rstrip() == "}":
            break
    return "\n".join(document)
