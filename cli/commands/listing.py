"""`llmd-rollout list` and `llmd-rollout history TARGET`: rollouts found through Temporal
visibility, by the search attributes the workflows keep current (workflows.search).

`list` shows the running and recent runs of every target (rollouts, teardowns and scheduled
upgrades) with their outcome; `history` shows one target's past rollouts with the revision and
image each applied, how long it took, and why it failed and what the rollback restored.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.text import Text
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus, WorkflowFailureError

from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.follow import ROLLOUT_WORKFLOW, TEARDOWN_WORKFLOW
from cli.formatting import age_text, cut, duration_text, flexible, table, time_text
from cli.output import Output
from cli.session import Session, open_session
from cli.suggest import target_hint
from cli.targets import parse_target
from cli.views import failure_brief
from rollouts import rollout_result
from spec.workflow_io import Phase, RolloutResult
from workflows import search
from workflows.ids import UPGRADE_SCHEDULE_PREFIX

UPGRADE_WORKFLOW = "UpgradeWorkflow"
# An UpgradeWorkflow is a schedule's firing; the rollout it starts is its child.
_KINDS = {
    ROLLOUT_WORKFLOW: "rollout", TEARDOWN_WORKFLOW: "teardown", UPGRADE_WORKFLOW: "scheduled",
}


async def run_list(args: argparse.Namespace, output: Output) -> int:
    types = ", ".join(f"'{name}'" for name in _KINDS)
    clauses = [f"WorkflowType IN ({types})"]
    if args.target:
        clauses.append(f"{search.TARGET.name} = '{parse_target(args.target)}'")
    if args.running:
        clauses.append("ExecutionStatus = 'Running'")
    session = await open_session(args)
    executions = await _executions(session, " AND ".join(clauses), args.limit)
    items = [await _with_refusal(session, execution) for execution in executions]
    output.document("RolloutList", {"items": items})
    if not items:
        output.note("no rollouts found" + (" running" if args.running else ""))
        return ExitCode.SUCCESS
    grid = table("TARGET", "KIND", "OUTCOME", "IMAGE", "AGE", "TIME")
    flexible(grid, "IMAGE")
    for item in items:
        kind = f"{item['kind']} (scheduled)" if item["scheduled"] and (
            item["kind"] != "scheduled") else item["kind"]
        grid.add_row(
            item["target"] or "-", kind, _outcome_text(item), cut(item["image"] or "-"),
            age_text(item["startedAt"]), duration_text(item["durationSeconds"]),
        )
    output.show(grid)
    return ExitCode.SUCCESS


async def run_history(args: argparse.Namespace, output: Output) -> int:
    target = parse_target(args.target)
    session = await open_session(args)
    query = f"WorkflowType = '{ROLLOUT_WORKFLOW}' AND {search.TARGET.name} = '{target}'"
    executions = await _executions(session, query, args.limit)
    if not executions:
        hint = await target_hint(session.client, target)
        raise CliError(
            f"no rollout of {target} is recorded in Temporal namespace {session.namespace!r}"
            + (hint or "; check the target with 'llmd-rollout list'")
        )
    items = [await _history_item(session, execution) for execution in executions]
    output.document("RolloutHistory", {"target": target, "items": items})
    grid = table("STARTED", "OUTCOME", "REVISION", "TIME", "IMAGE", "REASON")
    flexible(grid, "IMAGE", "REASON")
    for item in items:
        failure = item["failure"]
        reason = failure_brief(failure["reason"], failure["phase"], failure["step"]) if (
            failure) else ""
        if item["rollback"]:
            restored = item["rollback"]["restoredRevision"]
            reason += f"; restored {restored}" if restored else "; nothing to restore"
        outcome = _outcome_text(item)
        if item["scheduled"]:
            outcome.append(" (scheduled)", style="dim")
        grid.add_row(
            time_text(item["startedAt"]), outcome, item["revision"] or "-",
            duration_text(item["durationSeconds"]), cut(item["image"] or "-"), cut(reason),
        )
    output.show(Text(f"rollouts of {target}, newest first", style="bold"))
    output.show(grid)
    return ExitCode.SUCCESS


async def _executions(session: Session, query: str, limit: int) -> list[WorkflowExecution]:
    return [
        execution
        async for execution in session.client.list_workflows(query, limit=limit, page_size=limit)
    ]


def _list_item(execution: WorkflowExecution) -> dict[str, Any]:
    attributes = execution.typed_search_attributes
    return {
        "target": attributes.get(search.TARGET),
        "kind": _KINDS.get(execution.workflow_type, execution.workflow_type),
        "scheduled": _scheduled(execution),
        "workflowId": execution.id,
        "runId": execution.run_id,
        "workflowType": execution.workflow_type,
        "executionStatus": _status(execution),
        "outcome": attributes.get(search.OUTCOME),
        "phase": attributes.get(search.PHASE),
        "model": attributes.get(search.MODEL),
        "image": attributes.get(search.IMAGE),
        "startedAt": execution.start_time.isoformat(),
        "closedAt": execution.close_time.isoformat() if execution.close_time else None,
        "durationSeconds": _duration(execution),
    }


async def _with_refusal(session: Session, execution: WorkflowExecution) -> dict[str, Any]:
    """The list item; a failed rollout's result is read to tell a refusal (preflight changed
    nothing, exit 5) from a failure, which the search attributes cannot."""
    item = _list_item(execution)
    item["refused"] = False
    if item["outcome"] == "failed" and execution.workflow_type == ROLLOUT_WORKFLOW:
        result = await _result(session, execution)
        failure = result.failure if result is not None else None
        item["refused"] = failure is not None and failure.phase == Phase.PREFLIGHT
    return item


async def _history_item(session: Session, execution: WorkflowExecution) -> dict[str, Any]:
    item = _list_item(execution)
    result = await _result(session, execution)
    failure = result.failure if result is not None else None
    rollback = result.rollback if result is not None else None
    return {
        "workflowId": item["workflowId"],
        "runId": item["runId"],
        "scheduled": item["scheduled"],
        "executionStatus": item["executionStatus"],
        "outcome": result.outcome.value if result is not None else item["outcome"],
        "revision": result.revision if result is not None else None,
        "previousRevision": result.previous_revision if result is not None else None,
        "model": item["model"],
        "image": item["image"],
        "startedAt": item["startedAt"],
        "closedAt": item["closedAt"],
        "durationSeconds": item["durationSeconds"],
        "failure": None if failure is None else {
            "reason": failure.reason.value,
            "phase": failure.phase.value,
            "step": failure.step,
            "message": failure.message,
        },
        "rollback": None if rollback is None else {
            "restoredRevision": rollback.restored_revision,
            "verified": rollback.verified,
        },
    }


async def _result(session: Session, execution: WorkflowExecution) -> RolloutResult | None:
    if execution.status in (None, WorkflowExecutionStatus.RUNNING):
        return None
    handle = session.client.get_workflow_handle(
        execution.id, run_id=execution.run_id, result_type=RolloutResult
    )
    try:
        return await rollout_result(handle)
    except WorkflowFailureError:
        return None


def _scheduled(execution: WorkflowExecution) -> bool:
    """A schedule's firing, or the rollout one started (its parent is the firing)."""
    if execution.workflow_type == UPGRADE_WORKFLOW:
        return True
    return (execution.parent_id or "").startswith(UPGRADE_SCHEDULE_PREFIX)


def _status(execution: WorkflowExecution) -> str:
    status = execution.status or WorkflowExecutionStatus.RUNNING
    return status.name


def _duration(execution: WorkflowExecution) -> float | None:
    if execution.close_time is None:
        return None
    return round((execution.close_time - execution.start_time).total_seconds(), 3)


_OUTCOME_STYLES = {
    "succeeded": "green", "removed": "green", "running": "cyan", "rolled-back": "yellow",
    "refused": "yellow",
}


def _outcome_text(item: dict[str, Any]) -> Text:
    """The outcome the workflow recorded; a running one with its phase; a run that ended
    without recording one (terminated, timed out) by how Temporal closed it."""
    if item["executionStatus"] == "RUNNING":
        running_in = f" ({item['phase']})" if item.get("phase") else ""
        return Text(f"running{running_in}", style="cyan")
    outcome = item["outcome"]
    if not outcome or outcome == "running":
        outcome = item["executionStatus"].lower()
    failed_in = (item.get("failure") or {}).get("phase")
    if outcome == "failed" and (item.get("refused") or failed_in == Phase.PREFLIGHT.value):
        # Preflight changed nothing: the cluster refused the rollout (exit 5), as `status` says.
        outcome = "refused"
    return Text(outcome, style=_OUTCOME_STYLES.get(outcome, "red"))
