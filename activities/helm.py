"""Helm activities: install or upgrade a release, roll it back, uninstall it, read its state.

Where it sits: phases 2, 3 and 5 (LWS controller, gateway provider, infra chart) and their
rollback. Helm runs through helmcli/ (the runner, and the arguments in helmcli/commands.py),
heartbeating while it runs; cancelling the activity terminates it. Values go through a private
0600 file, never the command line. A re-run with the same chart and values creates no new
revision ("unchanged"). A release a killed helm left in pending-install/-upgrade/-rollback
(helm's "another operation is in progress" lock) is repaired first, but only when provably
abandoned (helmcli/repair.py: written by this same workflow, or started by an earlier
attempt of this step, or older than PENDING_REPAIR_AGE): a pending install is uninstalled, a
pending upgrade or rollback is rolled back to the last good revision, and the result says what
and why. The helm child dies with its worker (helmcli/runner.py). A release's state is read
from helm's own records through the API (helmcli/storage.py), not by a `helm history` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import command_failure, failure, retryable, target_client
from activities.heartbeat import heartbeat_step, wrote_in_earlier_attempt
from helmcli import (
    HelmCommandFailed,
    HelmError,
    HelmRunner,
    HelmTimedOut,
    HelmUnusable,
    HelmVersion,
    digest_of,
    history_state,
    in_progress,
    is_unchanged,
    local_chart_version,
    not_found,
    parse_release,
    private_values_file,
    release_digest,
    repair_for,
    rollback_args,
    uninstall_args,
    upgrade_args,
    user_values,
)
from helmcli.repair import verdict, writer_suffix
from helmcli.storage import UnreadableRecord, history_entries, record_selector, storage_kind
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

HELM_TRANSIENT = "HelmTransientError"
# The helm storage driver helm (a child of the worker, with its environment) keeps releases in.
HELM_DRIVER_ENV = "HELM_DRIVER"


def helm_failure(error: HelmError) -> ApplicationError:
    """What a helm error means to a rollout: no usable helm is a preflight failure; a timeout
    or a failure of the connection to the API server is retried after a back-off; any other
    failure is HelmFailed with the command and helm's last lines."""
    if isinstance(error, HelmUnusable):
        return failure(FailureReason.PREFLIGHT, error.message)
    if isinstance(error, HelmTimedOut) or (
        # Killed by a signal: nothing is known against the release; the next attempt frees a
        # release the kill left pending-* and runs helm again.
        isinstance(error, HelmCommandFailed) and error.returncode < 0
    ):
        return retryable(HELM_TRANSIENT, error.message, FailureReason.HELM_FAILED)
    if isinstance(error, HelmCommandFailed):
        # Helm prints client-go's errors: a busy API server (any 5xx Status, etcd, 429, a cut
        # connection) is retried; the next attempt first frees a release left pending-*.
        return command_failure(
            FailureReason.HELM_FAILED,
            error.message,
            "\n".join(error.stderr_lines),
            HELM_TRANSIENT,
            command=error.command,
            stderr=error.stderr_lines,
        )
    return failure(FailureReason.HELM_FAILED, error.message)


@contextmanager
def helm_errors() -> Iterator[None]:
    """Inside: a `HelmError` leaves as the Temporal error `helm_failure` names."""
    try:
        yield
    except HelmError as error:
        raise helm_failure(error) from None


def runner() -> HelmRunner:
    """A runner that heartbeats the step (and the release it writes) while helm runs."""
    return HelmRunner(beat=heartbeat_step)


async def release_state(
    helm: HelmRunner, target: Target, release: str, namespace: str
) -> HelmReleaseState:
    """The release's revisions, as `helm history` gives them: read from helm's own records in
    one API request (helmcli/storage.py), or through `helm history` when HELM_DRIVER keeps
    them outside the cluster's API."""
    kind = storage_kind(os.environ.get(HELM_DRIVER_ENV, ""))
    if kind is None:
        return await helm.release_state(target, release, namespace)
    # A busy API server fails this step as it fails helm: HelmFailed if it stays busy.
    async with target_client(target, (HELM_TRANSIENT, FailureReason.HELM_FAILED)) as client:
        records, _ = await asyncio.to_thread(
            client.list_objects, "v1", kind, namespace, record_selector(release)
        )
    try:
        return history_state(history_entries(records), release, namespace)
    except UnreadableRecord as error:
        raise failure(
            FailureReason.HELM_FAILED, f"cannot read helm release {namespace}/{release}: {error}"
        ) from None


def _writer() -> str:
    with contextlib.suppress(RuntimeError):
        return activity.info().workflow_id or ""
    return ""


async def repair_stuck(
    helm: HelmRunner, version: HelmVersion, target: Target, state: HelmReleaseState, timeout: float
) -> str | None:
    """Free a release locked in pending-* by a killed helm, only when provably abandoned
    (helmcli/repair.py); what was done and why, or None. A pending release that may
    still have a live writer is left alone: a retryable error, so the step waits for it."""
    action = repair_for(state)
    if action is None:
        return None
    release, namespace = state.release_name, state.namespace
    judged = verdict(state, _writer(), wrote_in_earlier_attempt(f"{namespace}/{release}"))
    if not judged.repair:
        raise retryable(HELM_TRANSIENT, f"not repairing: {judged.why}", FailureReason.HELM_FAILED)
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
    done = await helm.run(args, timeout, what, f"{namespace}/{release}")
    if done.returncode != 0:
        raise HelmCommandFailed(what, args, done)
    return done_text


@activity.defn
async def helm_upgrade_install(input: HelmReleaseInput) -> HelmResult:
    """`helm upgrade --install` the release; unchanged chart and values make no new revision."""
    with helm_errors():
        return await _upgrade_install(runner(), input)


async def _upgrade_install(helm: HelmRunner, input: HelmReleaseInput) -> HelmResult:
    version = await helm.version()
    release = input.release
    name = release.release_name
    namespace = release.namespace or input.target.namespace
    timeout = input.timeout.total_seconds()
    state = await release_state(helm, input.target, name, namespace)
    repaired = await repair_stuck(helm, version, input.target, state, timeout)
    if repaired:
        state = await release_state(helm, input.target, name, namespace)
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
            None
            if digest_of(described)
            else await helm.deployed_values(input.target, name, namespace)
        )
        if is_unchanged(state, digest, deployed, values, local_chart_version(release.chart)):
            return base.model_copy(
                update={"revision": state.revision, "status": state.status, "chart": state.chart}
            )
    with private_values_file(values) as values_file:
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
        done = await helm.run(args, timeout + 60, step, writing)
        if done.returncode != 0 and in_progress(done.stderr):
            # Locked by a helm killed between our check and now: repair once and retry.
            state = await release_state(helm, input.target, name, namespace)
            repaired = await repair_stuck(helm, version, input.target, state, timeout) or repaired
            done = await helm.run(args, timeout + 60, step, writing)
    if done.returncode != 0:
        raise HelmCommandFailed(step, args, done)
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
    with helm_errors():
        return await _rollback(runner(), input)


async def _rollback(helm: HelmRunner, input: HelmRollbackInput) -> HelmResult:
    version = await helm.version()
    state = await release_state(helm, input.target, input.release_name, input.namespace)
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
    done = await helm.run(args, input.timeout.total_seconds() + 60, step)
    if done.returncode != 0:
        raise HelmCommandFailed(step, args, done)
    after = await release_state(helm, input.target, input.release_name, input.namespace)
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
    with helm_errors():
        helm = runner()
        version = await helm.version()
        state = await release_state(helm, input.target, input.release_name, input.namespace)
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
        done = await helm.run(args, input.timeout.total_seconds() + 60, step)
        if done.returncode != 0 and not not_found(done.stderr):
            raise HelmCommandFailed(step, args, done)
        return base.model_copy(update={"action": "uninstalled", "revision": state.revision})


@activity.defn
async def helm_release_status(input: HelmStatusInput) -> HelmReleaseState:
    """The release's revisions (helm history), so a workflow knows where a rollback goes."""
    with helm_errors():
        helm = runner()
        await helm.version()
        return await release_state(helm, input.target, input.release_name, input.namespace)
