"""A child process we own: started with its output in a log file, stopped by PID.

Where it sits: under embedded.temporal (the dev server), embedded.clustersim_process (the
simulated cluster) and embedded.demo (the worker). Each child gets a session of its own, so a
Ctrl-C in the terminal reaches only the demo, which then stops its children in order (worker
first, cluster last) instead of all of them dying at once under a running step.

A parent that dies without stopping them (SIGKILL, the OOM killer) cannot do that: on Linux
each child is started through a few lines of Python that ask the kernel for a signal when its
parent dies (PR_SET_PDEATHSIG, kept across exec), then exec the command. Without it they kept
their ports and files until someone found them by hand. The signal is SIGTERM unless the owner
names another: a child whose orderly stop waits on its siblings (the worker drains activities
that report to Temporal) gains nothing from that stop once they are dying with the parent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO

POLL_INTERVAL_SECONDS = 0.05
LOG_TAIL_BYTES = 4000
# Run as `python -I -c ORPHAN_GUARD <signal> <parent pid> <executable> <argv...>`;
# PR_SET_PDEATHSIG is option 1 of prctl(2). A parent that died before the prctl would never send
# the signal, hence the check. -I: nothing of the environment or the working directory changes
# what it imports.
ORPHAN_GUARD = """\
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[1]))
if os.getppid() != int(sys.argv[2]):
    sys.exit("the process that started this one is gone")
os.execv(sys.argv[3], sys.argv[4:])
"""


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
        orphan_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        """`orphan_signal`: what the kernel sends the child if this process dies without
        stopping it."""
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._stop_timeout = stop_timeout
        self._orphan_signal = orphan_signal
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
        command = self._guarded_command()
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env, cwd=self._cwd, start_new_session=True,
            )
        except OSError as error:
            log.close()
            raise ChildProcessError(
                f"cannot start {self.name} ({self.command[0]}): {error}"
            ) from error
        self._log = log

    def _guarded_command(self) -> list[str]:
        """The command, started through ORPHAN_GUARD where the kernel offers it (Linux). The
        executable is resolved here, so a missing one is this process's clear error, not a
        traceback in the child's log."""
        if sys.platform != "linux":
            return self.command
        search = (self._env or os.environ).get("PATH")
        executable = self.command[0]
        if os.sep not in executable:
            executable = shutil.which(executable, path=search) or executable
        if self._cwd is not None and not os.path.isabs(executable):
            executable = os.path.join(self._cwd, executable)
        if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
            raise ChildProcessError(
                f"cannot start {self.name} ({self.command[0]}): not an executable file"
            )
        guard = [
            sys.executable, "-I", "-c", ORPHAN_GUARD,
            str(int(self._orphan_signal)), str(os.getpid()),
        ]
        return [*guard, executable, *self.command]

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
