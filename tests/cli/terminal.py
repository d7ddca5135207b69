"""Running the CLI on a pseudo-terminal, so it believes a person watches (live view, text)."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time

from embedded.demo import DemoEnvironment
from tests.cli.conftest import CLI_TIMEOUT_SECONDS, STARTER, CliRun, cli_environment

COLUMNS, LINES = 120, 60


async def run_on_terminal(demo: DemoEnvironment, args: list[str]) -> CliRun:
    return await asyncio.to_thread(_run, demo, args)


def _run(demo: DemoEnvironment, args: list[str]) -> CliRun:
    controller, terminal = pty.openpty()
    environment = {
        **cli_environment(demo), "TERM": "xterm-256color",
        "COLUMNS": str(COLUMNS), "LINES": str(LINES),
    }
    process = subprocess.Popen(
        [sys.executable, str(STARTER), *args],
        stdin=terminal, stdout=terminal, stderr=terminal, env=environment, close_fds=True,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + CLI_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        else:
            raise TimeoutError(f"llmd-rollout {' '.join(args)} ran past {CLI_TIMEOUT_SECONDS}s")
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    return CliRun(tuple(args), process.returncode, b"".join(chunks).decode(errors="replace"), "")
