"""`llmd-rollout rollback TARGET [--to REVISION]`: roll the target out again at an earlier
revision that served.

A rollback is a rollout of the spec an earlier successful rollout applied, read from that run's
Temporal history (its RolloutInput), so it takes the same path as any rollout: preflight, gates,
verification, and its own automatic rollback should the old revision fail now. Without --to, the
newest successful revision other than the current one is chosen. A failed rollout already
rolled back on its own; use `abort` to stop one that runs.
"""

from __future__ import annotations

import argparse

from temporalio.client import WorkflowExecution

from cli.commands.common import requester, rollout_input_of, watch
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.follow import ROLLOUT_WORKFLOW
from cli.output import Output
from cli.session import Session, open_session
from cli.targets import parse_target
from rollouts import rollout_result, start_rollout
from spec.workflow_io import Outcome, RolloutResult
from workflows import search

# How far back a rollback looks for the revision to return to.
HISTORY_DEPTH = 50


async def run(args: argparse.Namespace, output: Output) -> int:
    target = parse_target(args.target)
    session = await open_session(args)
    succeeded = await _succeeded_rollouts(session, target)
    if not succeeded:
        raise CliError(
            f"{target} has no successful rollout recorded in Temporal to return to; "
            f"see 'llmd-rollout history {target}'"
        )
    execution, result = _choose(succeeded, args.to, target)
    request = await rollout_input_of(session, execution)
    reason = f"rollback to revision {result.revision} (as applied by run {execution.run_id})"
    output.note(f"{target}: {reason}")
    handle = await start_rollout(
        session.client,
        request.spec,
        task_queue=session.task_queue,
        requested_by=f"cli:{requester()}",
        reason=reason,
    )
    run_id = handle.result_run_id or handle.first_execution_run_id or ""
    if args.wait:
        return await watch(session, output, target, run_id)
    output.document(
        "RolloutStarted",
        {
            "target": target,
            "workflowId": handle.id,
            "runId": run_id,
            "revision": result.revision,
            "file": None,
        },
    )
    output.note(f"rollout of {target} started: workflow {handle.id}, run {run_id}")
    return ExitCode.SUCCESS


async def _succeeded_rollouts(
    session: Session, target: str
) -> list[tuple[WorkflowExecution, RolloutResult]]:
    """Newest first: the target's completed rollouts and their results."""
    query = (
        f"WorkflowType = '{ROLLOUT_WORKFLOW}' AND {search.TARGET.name} = '{target}' "
        f"AND {search.OUTCOME.name} = '{Outcome.SUCCEEDED.value}'"
    )
    found = []
    async for execution in session.client.list_workflows(query, limit=HISTORY_DEPTH):
        handle = session.client.get_workflow_handle(
            execution.id, run_id=execution.run_id, result_type=RolloutResult
        )
        found.append((execution, await rollout_result(handle)))
    return found


def _choose(
    succeeded: list[tuple[WorkflowExecution, RolloutResult]], wanted: str | None, target: str
) -> tuple[WorkflowExecution, RolloutResult]:
    current = succeeded[0][1].revision
    if wanted is None:
        for execution, result in succeeded:
            if result.revision != current:
                return execution, result
        raise CliError(
            f"{target} has only ever served revision {current}; there is no earlier revision "
            "to roll back to"
        )
    for execution, result in succeeded:
        if result.revision and result.revision.startswith(wanted):
            return execution, result
    known = ", ".join(dict.fromkeys(r.revision or "?" for _, r in succeeded))
    raise CliError(
        f"revision {wanted} of {target} was never rolled out successfully (known: {known}); "
        f"see 'llmd-rollout history {target}'"
    )
