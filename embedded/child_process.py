"""A child process we own: started with its output in a log file, stopped by PID.

Where it sits: under embedded.temporal (the dev server), embedded.clustersim_process (the
simulated cluster) and embedded.demo (the worker). Each child gets a session of its own, so a
Ctrl-C in the terminal reaches only the demo, which then stops its children in order (worker
first, cluster last) instead of all of them dying at once under a running step.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO

POLL_INTERVAL_SECONDS = 0.05
LOG_TAIL_BYTES = 4000


class ChildProcessError(RuntimeError):
    """A child could not be started or stopped; the message says why."""


class ChildProcess:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_timeout: timedelta = timedelta(seconds=15),
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The PID while the child runs, else None."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        if self.pid is not None:
            raise ChildProcessError(f"{self.name} already runs as PID {self.pid}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env, cwd=self._cwd, start_new_session=True,
            )
        except OSError as error:
            log.close()
            raise ChildProcessError(
                f"cannot start {self.name} ({self.command[0]}): {error}"
            ) from error
        self._log = log

    async def stop(self) -> None:
        """SIGTERM, wait, SIGKILL as a last resort; returns once the child is reaped."""
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                if not await _reaped(process, self._stop_timeout):
                    process.kill()
                    if not await _reaped(process, self._stop_timeout):
                        raise ChildProcessError(f"{self.name} PID {process.pid} survived SIGKILL")
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def exited_message(self) -> str:
        """A sentence for a child that exited on its own, with the end of its log."""
        return (
            f"{self.name} exited with code {self.returncode}; its log {self.log_path} ends "
            f"with:\n{log_tail(self.log_path)}"
        )


def log_tail(path: Path) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            return log.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


async def _reaped(process: subprocess.Popen[bytes], timeout: timedelta) -> bool:
    deadline = time.monotonic() + timeout.total_seconds()
    while process.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    return True
