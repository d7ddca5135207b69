"""Helm activities: install or upgrade a release, roll it back, uninstall it, read its state.

Where it sits: phases 2, 3 and 5 (LWS controller, gateway provider, infra chart) and their
rollback. It runs the helm CLI named by $LLMD_HELM (default `helm` on PATH), v3 or v4, with the
arguments from activities/helmcli.py. Values go through a private 0600 file, never the command
line. A re-run with the same chart and values creates no new revision ("unchanged"). A release
a killed helm left in pending-install/-upgrade/-rollback (helm's "another operation is in
progress" lock) is repaired first, but only when provably abandoned (activities/helm_repair.py:
written by this same workflow, or started by an earlier attempt of this step, or older than
PENDING_REPAIR_AGE): a pending install is uninstalled, a pending upgrade or rollback is rolled
back to the last good revision, and the result says what and why. Helm runs as a subprocess the
activity heartbeats over (naming the release it writes); cancelling the activity terminates it,
and it dies with its worker.
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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import failure
from activities.helm_repair import verdict, writer_suffix
from activities.helmcli import (
    HelmVersion,
    command_line,
    digest_of,
    get_values_args,
    history_args,
    in_progress,
    is_unchanged,
    last_lines,
    local_chart_version,
    not_found,
    parse_history,
    parse_release,
    parse_version,
    release_digest,
    repair_for,
    rollback_args,
    transient,
    uninstall_args,
    upgrade_args,
    user_values,
)
from activities.watching import HEARTBEAT_SECONDS
from spec.activity_io import (
    HelmReleaseInput,
    HelmReleaseState,
    HelmResult,
    HelmRollbackInput,
    HelmStatusInput,
    HelmUninstallInput,
)
from spec.reasons import FailureReason
from spec.rollout import Target

HELM_ENV = "LLMD_HELM"
HELM_TRANSIENT = "HelmTransientError"
# Helm's own operations get their --timeout; reading commands get this long.
READ_TIMEOUT_SECONDS = 120.0
_GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1
# prctl, looked up once, before any fork (Linux only; elsewhere helm is not tied to the worker).
_PRCTL = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    if sys.platform.startswith("linux") else None
)


def helm_binary() -> str:
    return os.environ.get(HELM_ENV) or "helm"


@dataclass(frozen=True)
class HelmRun:
    returncode: int
    stdout: str
    stderr: str


def _die_with_worker() -> None:
    """In the helm child: get SIGKILL when the worker dies, so no helm outlives its activity
    (a release it left pending is then provably abandoned; see activities/helm_repair.py)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def run_helm(
    args: list[str], timeout: float, step: str, writing: str | None = None
) -> HelmRun:
    """Run helm, heartbeating while it runs (`writing`: the release it changes, recorded in the
    heartbeat so a retry knows a pending state is its own); terminate it if the activity is
    cancelled."""
    binary = helm_binary()
    if shutil.which(binary) is None:
        raise failure(
            FailureReason.PREFLIGHT,
            f"helm not found: {binary!r} (set ${HELM_ENV} to the helm binary)",
        )
    process = await asyncio.create_subprocess_exec(
        binary,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_die_with_worker if _PRCTL is not None else None,
    )
    if writing:
        # At once: a worker killed in the next seconds leaves a retry this proof of ownership.
        with contextlib.suppress(RuntimeError):
            activity.heartbeat({"step": step, "writing": writing})
    task = asyncio.ensure_future(process.communicate())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not task.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ApplicationError(
                    f"helm did not finish within {timeout:.0f}s: {command_line(args)}",
                    type=HELM_TRANSIENT,
                )
            await asyncio.wait({task}, timeout=min(remaining, HEARTBEAT_SECONDS))
            with contextlib.suppress(RuntimeError):
                activity.heartbeat({"step": step, **({"writing": writing} if writing else {})})
    except BaseException:
        await _stop(process)
        raise
    stdout, stderr = task.result()
    return HelmRun(
        process.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace")
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _GRACE_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


_VERSIONS: dict[str, HelmVersion] = {}


async def helm_version() -> HelmVersion:
    binary = helm_binary()
    if binary not in _VERSIONS:
        done = await run_helm(["version", "--short"], READ_TIMEOUT_SECONDS, "helm version")
        if done.returncode != 0:
            raise failure(FailureReason.PREFLIGHT, f"`{binary} version` failed: {done.stderr}")
        _VERSIONS[binary] = parse_version(done.stdout)
    version = _VERSIONS[binary]
    if not version.supported:
        raise failure(
            FailureReason.PREFLIGHT,
            f"helm {version.text} is not supported (helm v3.8+ or v4 is): set ${HELM_ENV}",
        )
    return version


def _helm_failed(what: str, args: list[str], run: HelmRun) -> ApplicationError:
    lines = last_lines(run.stderr)
    message = f"{what} failed: {' | '.join(lines[-3:]) or f'exit code {run.returncode}'}"
    if transient(run.stderr):
        # The API server, not the release: Temporal retries the activity after a back-off.
        return ApplicationError(message, type=HELM_TRANSIENT, non_retryable=False)
    return failure(FailureReason.HELM_FAILED, message, command=command_line(args), stderr=lines)


async def release_state(target: Target, release: str, namespace: str) -> HelmReleaseState:
    args = history_args(target, release, namespace)
    done = await run_helm(args, READ_TIMEOUT_SECONDS, f"helm history {release}")
    if done.returncode != 0:
        if not_found(done.stderr):
            return HelmReleaseState(release_name=release, namespace=namespace, exists=False)
        raise _helm_failed(f"helm history {release}", args, done)
    return parse_history(done.stdout, release, namespace)


def _writer() -> str:
    with contextlib.suppress(RuntimeError):
        return activity.info().workflow_id or ""
    return ""


def _resumed(release: str) -> bool:
    """Whether an earlier attempt of this activity started helm on `release`."""
    with contextlib.suppress(RuntimeError):
        info = activity.info()
        if info.attempt > 1:
            return any(
                isinstance(d, dict) and d.get("writing") == release
                for d in info.heartbeat_details or ()
            )
    return False


async def repair_stuck(
    version: HelmVersion, target: Target, state: HelmReleaseState, timeout: float
) -> str | None:
    """Free a release locked in pending-* by a killed helm, only when provably abandoned
    (activities/helm_repair.py); what was done and why, or None. A pending release that may
    still have a live writer is left alone: a retryable error, so the step waits for it."""
    action = repair_for(state)
    if action is None:
        return None
    release, namespace = state.release_name, state.namespace
    judged = verdict(state, _writer(), _resumed(f"{namespace}/{release}"))
    if not judged.repair:
        raise ApplicationError(f"not repairing: {judged.why}", type=HELM_TRANSIENT)
    if action[0] == "uninstall":
        args = uninstall_args(
            version, target, release, namespace, False, timedelta(seconds=timeout)
        )
        what = f"uninstall of {release} stuck in {state.status}"
        done_text = f"uninstalled (was {state.status}; {judged.why})"
    else:
        revision = action[1]
        args = rollback_args(
            version, target, release, namespace, revision, False, timedelta(seconds=timeout)
        )
        what = f"rollback of {release} stuck in {state.status} to revision {revision}"
        done_text = f"rolled back to revision {revision} (was {state.status}; {judged.why})"
    activity.logger.warning("repairing helm release: %s", what)
    done = await run_helm(args, timeout, what, f"{namespace}/{release}")
    if done.returncode != 0:
        raise _helm_failed(what, args, done)
    return done_text


async def _deployed_values(target: Target, release: str, namespace: str) -> dict[str, object]:
    args = get_values_args(target, release, namespace)
    done = await run_helm(args, READ_TIMEOUT_SECONDS, f"helm get values {release}")
    if done.returncode != 0:
        raise _helm_failed(f"helm get values {release}", args, done)
    values = json.loads(done.stdout or "null")
    return values if isinstance(values, dict) else {}


@activity.defn
async def helm_upgrade_install(input: HelmReleaseInput) -> HelmResult:
    """`helm upgrade --install` the release; unchanged chart and values make no new revision."""
    version = await helm_version()
    release = input.release
    name = release.release_name
    namespace = release.namespace or input.target.namespace
    timeout = input.timeout.total_seconds()
    state = await release_state(input.target, name, namespace)
    repaired = await repair_stuck(version, input.target, state, timeout)
    if repaired:
        state = await release_state(input.target, name, namespace)
    try:
        values = user_values(release)
    except (OSError, ValueError) as error:
        raise failure(
            FailureReason.INVALID_SPEC, f"release {name}: cannot read its values: {error}"
        ) from None
    digest = release_digest(release, values)
    base = HelmResult(
        release_name=name,
        namespace=namespace,
        action="unchanged",
        repaired=repaired,
        helm_version=version.text,
    )
    if state.exists and state.status == "deployed":
        described = state.history[-1].description if state.history else ""
        # Helm's own record of the values is needed only for a release we did not install.
        deployed = (
            None if digest_of(described) else await _deployed_values(input.target, name, namespace)
        )
        if is_unchanged(state, digest, deployed, values, local_chart_version(release.chart)):
            return base.model_copy(
                update={"revision": state.revision, "status": state.status, "chart": state.chart}
            )
    with tempfile.TemporaryDirectory(prefix="llmd-helm-") as private:
        values_file = Path(private) / "values.json"
        # mkstemp-like permissions: only this user may read the values.
        descriptor = os.open(values_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(values, handle)
        args = upgrade_args(
            version,
            input.target,
            release,
            namespace,
            str(values_file),
            # The description carries the digest and, after it, the writer (helm_repair.py).
            digest + writer_suffix(_writer()),
            input.wait,
            input.timeout,
        )
        step = f"helm upgrade --install {name}"
        writing = f"{namespace}/{name}"
        done = await run_helm(args, timeout + 60, step, writing)
        if done.returncode != 0 and in_progress(done.stderr):
            # Locked by a helm killed between our check and now: repair once and retry.
            state = await release_state(input.target, name, namespace)
            repaired = await repair_stuck(version, input.target, state, timeout) or repaired
            done = await run_helm(args, timeout + 60, step, writing)
    if done.returncode != 0:
        raise _helm_failed(step, args, done)
    revision, status, chart = parse_release(done.stdout)
    return base.model_copy(
        update={
            "action": "upgraded" if state.exists else "installed",
            "revision": revision,
            "status": status,
            "chart": chart,
            "repaired": repaired,
        }
    )


@activity.defn
async def helm_rollback(input: HelmRollbackInput) -> HelmResult:
    """Roll the release back to `revision`; a no-op when the latest revision already is that
    rollback and deployed."""
    version = await helm_version()
    state = await release_state(input.target, input.release_name, input.namespace)
    base = HelmResult(
        release_name=input.release_name,
        namespace=input.namespace,
        action="unchanged",
        helm_version=version.text,
    )
    if not state.exists:
        return base.model_copy(update={"action": "absent"})
    latest = state.history[-1]
    if latest.status == "deployed" and latest.description == f"Rollback to {input.revision}":
        return base.model_copy(
            update={"revision": latest.revision, "status": latest.status, "chart": latest.chart}
        )
    args = rollback_args(
        version,
        input.target,
        input.release_name,
        input.namespace,
        input.revision,
        input.wait,
        input.timeout,
    )
    step = f"helm rollback {input.release_name} {input.revision}"
    done = await run_helm(args, input.timeout.total_seconds() + 60, step)
    if done.returncode != 0:
        raise _helm_failed(step, args, done)
    after = await release_state(input.target, input.release_name, input.namespace)
    return base.model_copy(
        update={
            "action": "rolled-back",
            "revision": after.revision,
            "status": after.status,
            "chart": after.chart,
        }
    )


@activity.defn
async def helm_uninstall(input: HelmUninstallInput) -> HelmResult:
    """Uninstall the release; "absent" when there is none."""
    version = await helm_version()
    state = await release_state(input.target, input.release_name, input.namespace)
    base = HelmResult(
        release_name=input.release_name,
        namespace=input.namespace,
        action="absent",
        helm_version=version.text,
    )
    if not state.exists:
        return base
    args = uninstall_args(
        version, input.target, input.release_name, input.namespace, input.wait, input.timeout
    )
    step = f"helm uninstall {input.release_name}"
    done = await run_helm(args, input.timeout.total_seconds() + 60, step)
    if done.returncode != 0 and not not_found(done.stderr):
        raise _helm_failed(step, args, done)
    return base.model_copy(update={"action": "uninstalled", "revision": state.revision})


@activity.defn
async def helm_release_status(input: HelmStatusInput) -> HelmReleaseState:
    """The release's revisions (helm history), so a workflow knows where a rollback goes."""
    await helm_version()
    return await release_state(input.target, input.release_name, input.namespace)
