"""`llmd-rollout approve|pause|resume|abort TARGET`: steer a running rollout.

Each is a validated Temporal update of RolloutWorkflow: the workflow accepts it (and says what it
does) or rejects it with a sentence saying why (e.g. no gate is waiting for approval), which is
printed as is, exit 1. `abort` stops the rollout and rolls back; with --wait it follows the
rollback to its end. `approve`/`abort fleet/NAME` steer a fleet (cli/commands/fleet.py).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from cli.commands import fleet
from cli.commands.common import requester, watch
from cli.errors import CliError, NoSuchRollout
from cli.exit_codes import ExitCode
from cli.follow import handle_of
from cli.output import Output
from cli.session import open_session
from cli.suggest import target_hint
from cli.targets import parse_target
from spec.workflow_io import (
    AbortRequest,
    ApproveRequest,
    ControlResult,
    PauseRequest,
    ResumeRequest,
)

# The workflow validates an update in milliseconds; this long without an answer means no worker.
UPDATE_TIMEOUT = timedelta(seconds=15)


def _request(args: argparse.Namespace) -> Any:
    by = requester()
    if args.command == "approve":
        return ApproveRequest(gate=args.gate, by=by, note=args.note or "")
    if args.command == "pause":
        return PauseRequest(by=by, reason=args.reason or "")
    if args.command == "resume":
        return ResumeRequest(by=by)
    return AbortRequest(by=by, reason=args.reason or "")


async def run(args: argparse.Namespace, output: Output) -> int:
    if fleet.is_fleet_argument(args.target):
        return await fleet.control(args, output)
    target = parse_target(args.target)
    session = await open_session(args)
    handle = handle_of(session, target)
    action = args.command
    try:
        result: ControlResult = await asyncio.wait_for(
            handle.execute_update(action, _request(args), result_type=ControlResult),
            UPDATE_TIMEOUT.total_seconds(),
        )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise CliError(
            f"no worker answered the {action} of {target} within "
            f"{UPDATE_TIMEOUT.total_seconds():.0f}s (is one polling task queue "
            f"{session.task_queue}?); the request may still apply when one does: check with "
            f"'llmd-rollout status {target}'"
        ) from None
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        if "completed" in error.message.lower() or "closed" in error.message.lower():
            raise CliError(
                f"cannot {action} {target}: its last rollout has already finished; see "
                f"'llmd-rollout status {target}'"
            ) from None
        hint = await target_hint(session.client, target)
        raise NoSuchRollout(target, session.namespace, hint) from None
    follow_rollback = action == "abort" and args.wait
    if not follow_rollback:
        # With --wait the RolloutStatus at the end is the one document on stdout.
        output.document(
            "ControlResult",
            {
                "target": target,
                "workflowId": handle.id,
                "action": action,
                "message": result.message,
                "state": result.state.value,
                "step": result.step,
            },
        )
    output.note(f"{target}: {result.message}")
    if follow_rollback:
        return await watch(session, output, target)
    return ExitCode.SUCCESS
