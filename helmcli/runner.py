"""Running the helm CLI: one subprocess at a time, with a deadline, and reading its answers.

Where it sits: under the Helm activities (activities/helm.py) and the CLI's `plan`; the
arguments come from helmcli/commands.py. It runs the helm named by $LLMD_HELM (default `helm`
on PATH), v3 or v4. While helm runs, `beat` is called every few seconds with the step (the
activities heartbeat with it); when the caller is cancelled, helm is terminated. What went wrong
is a `HelmError`, in words; activities/helm.py says what each means to a rollout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedded.tools import tool_binary
from helmcli.commands import (
    HelmVersion,
    command_line,
    get_values_args,
    history_args,
    last_lines,
    not_found,
    parse_history,
    parse_version,
    without_debug_log,
)
from spec.activity_io import HelmReleaseState
from spec.rollout import Target

HELM_ENV = "LLMD_HELM"
# Helm's own operations get their --timeout; reading commands get this long.
READ_TIMEOUT_SECONDS = 120.0
# How often `beat` is called while helm runs.
BEAT_SECONDS = 5.0
_GRACE_SECONDS = 10.0


class HelmError(Exception):
    """Helm could not do what was asked; `message` says what, for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HelmUnusable(HelmError):
    """No helm to run here: missing, failing to say its version, or a version we do not support."""


class HelmTimedOut(HelmError):
    """Helm did not finish within its deadline (and was stopped)."""


class HelmCommandFailed(HelmError):
    """Helm exited non-zero; its last stderr lines say why (activities/helm.py classifies them)."""

    def __init__(self, what: str, args: list[str], run: HelmRun) -> None:
        self.stderr_lines = last_lines(run.stderr)
        # Negative: helm was killed by a signal (it said nothing of the release).
        self.returncode = run.returncode
        self.command = command_line(args)
        summary = " | ".join(self.stderr_lines[-3:]) or f"exit code {run.returncode}"
        super().__init__(f"{what} failed: {summary}")


def helm_binary() -> str:
    """$LLMD_HELM, else `helm` on PATH, else the pinned helm `make venv` installs beside Python
    (so the CLI run as .venv/bin/llmd-rollout finds it without an activated venv)."""
    return tool_binary("helm", HELM_ENV)


@contextlib.contextmanager
def private_values_file(values: Mapping[str, Any]) -> Iterator[Path]:
    """`values` in a file only this user may read, removed afterwards: values can hold secrets,
    so they never go on a command line."""
    with tempfile.TemporaryDirectory(prefix="llmd-helm-") as private:
        values_file = Path(private) / "values.json"
        descriptor = os.open(values_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(values, handle)
        yield values_file


@dataclass(frozen=True)
class HelmRun:
    returncode: int
    stdout: str
    stderr: str


def _no_beat(step: str, writing: str | None) -> None:
    del step, writing


_PR_SET_PDEATHSIG = 1
# prctl, looked up once, before any fork (Linux only; elsewhere helm is not tied to its parent).
_PRCTL = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    if sys.platform.startswith("linux")
    else None
)
# util-linux's setpriv sets the parent-death signal and then execs helm, so the worker spawns
# it without running Python in the child. A `preexec_fn` makes Python fork the whole worker
# (hundreds of threads, a few hundred MB) instead of vfork, and run Python code in a child of
# a threaded process, which may deadlock on a lock another thread held at the fork; at fifty
# rollouts that fork was 8 % of the worker's time holding the GIL (py-spy). Debian's (and so
# the worker image's) util-linux has it; without it, the preexec_fn below does the same.
_SETPRIV = shutil.which("setpriv") if _PRCTL is not None else None


def _die_with_parent() -> None:
    """In the helm child: get SIGKILL when the worker dies, so no helm outlives its activity
    (a release it left pending is then provably abandoned; see helmcli/repair.py)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def helm_command(executable: str, args: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """The command line that runs helm tied to this process (SIGKILL when it dies), and the
    preexec_fn it needs (None through setpriv)."""
    if _SETPRIV is not None:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", executable, *args], None
    return [executable, *args], (_die_with_parent if _PRCTL is not None else None)


class HelmRunner:
    """Runs helm commands, calling `beat(step, writing)` every few seconds while one runs (and at
    once when it writes a release, so a retry knows a pending state was its own)."""

    def __init__(self, beat: Callable[[str, str | None], None] = _no_beat) -> None:
        self.beat = beat

    async def run(
        self, args: list[str], timeout: float, step: str, writing: str | None = None
    ) -> HelmRun:
        """Run helm; terminate it when the deadline passes or the caller is cancelled.
        `writing` names the release (`namespace/name`) the command changes."""
        binary = helm_binary()
        executable = shutil.which(binary)
        if executable is None:
            raise HelmUnusable(f"helm not found: {binary!r} (set ${HELM_ENV} to the helm binary)")
        command, preexec = helm_command(executable, args)
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=preexec,
        )
        if writing:
            # At once: a worker killed in the next seconds leaves a retry this proof of ownership.
            self.beat(step, writing)
        task = asyncio.ensure_future(process.communicate())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not task.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise HelmTimedOut(
                        f"helm did not finish within {timeout:.0f}s: {command_line(args)}"
                    )
                await asyncio.wait({task}, timeout=min(remaining, BEAT_SECONDS))
                self.beat(step, writing)
        except BaseException:
            await _stop(process)
            raise
        stdout, stderr = task.result()
        return HelmRun(
            process.returncode or 0,
            stdout.decode(errors="replace"),
            without_debug_log(stderr.decode(errors="replace")),
        )

    async def version(self) -> HelmVersion:
        """The helm version (asked once per binary); unusable when unsupported."""
        binary = helm_binary()
        if binary not in _VERSIONS:
            done = await self.run(["version", "--short"], READ_TIMEOUT_SECONDS, "helm version")
            if done.returncode != 0:
                raise HelmUnusable(f"`{binary} version` failed: {done.stderr}")
            _VERSIONS[binary] = parse_version(done.stdout)
        version = _VERSIONS[binary]
        if not version.supported:
            raise HelmUnusable(
                f"helm {version.text} is not supported (helm v3.8+ or v4 is): set ${HELM_ENV}"
            )
        return version

    async def release_state(self, target: Target, release: str, namespace: str) -> HelmReleaseState:
        """The release's revisions (`helm history`); `exists` False when there is none."""
        args = history_args(target, release, namespace)
        done = await self.run(args, READ_TIMEOUT_SECONDS, f"helm history {release}")
        if done.returncode != 0:
            if not_found(done.stderr):
                return HelmReleaseState(release_name=release, namespace=namespace, exists=False)
            raise HelmCommandFailed(f"helm history {release}", args, done)
        return parse_history(done.stdout, release, namespace)

    async def deployed_values(
        self, target: Target, release: str, namespace: str
    ) -> dict[str, object]:
        """The values helm recorded for the deployed revision (`helm get values`)."""
        args = get_values_args(target, release, namespace)
        done = await self.run(args, READ_TIMEOUT_SECONDS, f"helm get values {release}")
        if done.returncode != 0:
            raise HelmCommandFailed(f"helm get values {release}", args, done)
        values = json.loads(done.stdout or "null")
        return values if isinstance(values, dict) else {}


_VERSIONS: dict[str, HelmVersion] = {}


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _GRACE_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
