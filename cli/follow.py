"""What a target's rollout is doing, once (`observe`) or until it ends (`follow`).

Where it sits: `status`, `apply --wait`, `teardown --wait` and the demo read rollouts through
here. The reading itself (the progress query with live heartbeat figures, the result of a failed
run) is rollouts.observing's; this module adds what a command line needs: which run, whether it
still runs, what to tell a person when no worker answers, and the exit code to end with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from cli import exit_codes
from cli.errors import NoSuchRollout
from cli.exit_codes import ExitCode
from cli.session import Session
from cli.suggest import target_hint
from cli.targets import workflow_id_of
from rollouts import fetch_progress, rollout_result
from spec.workflow_io import Progress, RolloutResult, TeardownResult

# A worker answers a query in milliseconds; this long without an answer means none is polling.
QUERY_TIMEOUT = timedelta(seconds=5)
DEFAULT_INTERVAL = timedelta(seconds=0.5)

ROLLOUT_WORKFLOW = "RolloutWorkflow"
TEARDOWN_WORKFLOW = "TeardownWorkflow"


@dataclass(frozen=True)
class Snapshot:
    """One look at a target's current (or last) rollout or teardown run."""

    target: str
    workflow_id: str
    run_id: str
    workflow_type: str
    status: WorkflowExecutionStatus
    progress: Progress | None = None
    result: RolloutResult | TeardownResult | None = None
    notice: str | None = None

    @property
    def running(self) -> bool:
        return self.status == WorkflowExecutionStatus.RUNNING

    @property
    def exit_code(self) -> ExitCode | None:
        """The code to end with now; None while it runs and needs nobody."""
        if self.running:
            return exit_codes.for_progress(self.progress) if self.progress else None
        if isinstance(self.result, RolloutResult):
            return exit_codes.for_result(self.result)
        if isinstance(self.result, TeardownResult):
            return exit_codes.for_outcome(self.result.outcome)
        if self.status == WorkflowExecutionStatus.COMPLETED:
            return ExitCode.SUCCESS
        return ExitCode.FAILED


def handle_of(
    session: Session, target: str, run_id: str | None = None
) -> WorkflowHandle[Any, Any]:
    return session.client.get_workflow_handle(workflow_id_of(target), run_id=run_id)


async def observe(session: Session, target: str, run_id: str | None = None) -> Snapshot:
    """The run's state now: progress while it runs, its result once it has closed."""
    handle = handle_of(session, target, run_id)
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            hint = await target_hint(session.client, target)
            raise NoSuchRollout(target, session.namespace, hint) from None
        raise
    status = description.status or WorkflowExecutionStatus.RUNNING
    base = Snapshot(
        target=target,
        workflow_id=handle.id,
        run_id=description.run_id,
        workflow_type=description.workflow_type,
        status=status,
    )
    pinned = session.client.get_workflow_handle(handle.id, run_id=description.run_id)
    if status == WorkflowExecutionStatus.RUNNING:
        return await _with_progress(base, pinned, session.task_queue)
    return await _with_result(session, base)


async def follow(
    session: Session,
    target: str,
    run_id: str | None,
    on_snapshot: Callable[[Snapshot], None],
    *,
    interval: timedelta = DEFAULT_INTERVAL,
) -> Snapshot:
    """Observe until the run ends (or waits for approval), calling `on_snapshot` each time.

    Unbounded on purpose: the rollout's own budgets (spec.budgets) end it; Ctrl-C leaves the
    watcher without touching the rollout.
    """
    pinned_run = run_id
    while True:
        snapshot = await observe(session, target, pinned_run)
        pinned_run = snapshot.run_id
        on_snapshot(snapshot)
        if not snapshot.running or snapshot.exit_code is not None:
            return snapshot
        await asyncio.sleep(interval.total_seconds())


async def _with_progress(
    base: Snapshot, handle: WorkflowHandle[Any, Any], task_queue: str
) -> Snapshot:
    try:
        progress = await asyncio.wait_for(
            fetch_progress(handle), QUERY_TIMEOUT.total_seconds()
        )
    except (TimeoutError, WorkflowQueryFailedError) as error:
        detail = str(error) or f"none within {QUERY_TIMEOUT.total_seconds():.0f}s"
        return replace(
            base,
            notice=(
                f"no worker answered the progress query ({detail}); is a worker polling "
                f"task queue {task_queue}? Start one with 'python -m worker'"
            ),
        )
    except RPCError as error:
        if error.status != RPCStatusCode.DEADLINE_EXCEEDED:
            raise
        return replace(base, notice=f"the progress query timed out: {error.message}")
    return replace(base, progress=progress)


async def _with_result(session: Session, base: Snapshot) -> Snapshot:
    client = session.client
    try:
        if base.workflow_type == TEARDOWN_WORKFLOW:
            teardown = await client.get_workflow_handle(
                base.workflow_id, run_id=base.run_id, result_type=TeardownResult
            ).result()
            return replace(base, result=teardown)
        rollout = client.get_workflow_handle(
            base.workflow_id, run_id=base.run_id, result_type=RolloutResult
        )
        return replace(base, result=await rollout_result(rollout))
    except WorkflowFailureError as failed:
        cause = failed.cause
        reason = str(cause) if cause is not None else str(failed)
        return replace(base, notice=f"the {_kind(base)} ended {base.status.name}: {reason}")


def _kind(snapshot: Snapshot) -> str:
    return "teardown" if snapshot.workflow_type == TEARDOWN_WORKFLOW else "rollout"
