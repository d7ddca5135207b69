"""The fleet side of the existing verbs: `apply -f fleet.yaml`, `status fleet/NAME`,
`approve fleet/NAME`, `abort fleet/NAME`.

Where it sits: apply, status and control hand over here when the file says `kind: Fleet` or the
argument starts with `fleet/`; the rest of each verb (connection flags, output modes, exit codes)
is theirs. The fleet's runs live under `fleet/<name>` (rollouts/fleets.py); its targets' runs
keep their own IDs, so `status <cluster>/<namespace>/<name>` shows one target's rollout as ever.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    ScheduleAlreadyRunningError,
    WorkflowFailureError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from cli.commands.common import refusal, requester
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.session import Session, open_session
from rollouts.fleets import (
    FleetBusy,
    create_fleet_schedule,
    fleet_handle,
    fleet_progress,
    fleet_result,
    start_fleet,
)
from spec.fleet import load_fleet
from spec.fleet_io import FleetOutcome, FleetProgress, TargetState
from spec.loader import SpecError
from spec.workflow_io import AbortRequest, ApproveRequest, ControlResult, MaintenanceWindow
from workflows.ids import FLEET_ID_PREFIX

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
UPDATE_SECONDS = 15.0
FLEET_VERBS = ("approve", "abort")


def is_fleet_argument(text: str) -> bool:
    return text.startswith(FLEET_ID_PREFIX)


def parse_fleet(text: str) -> str:
    name = text.removeprefix(FLEET_ID_PREFIX)
    if not _NAME.match(name):
        raise CliError(f"{text!r} is not a fleet: write fleet/<name>, the fleet's metadata.name")
    return name


async def apply(args: argparse.Namespace, output: Output) -> int:
    try:
        plan = load_fleet(args.file)
    except SpecError as error:
        raise refusal(error) from None
    session = await open_session(args)
    try:
        handle = await start_fleet(
            session.client, plan, task_queue=session.task_queue,
            requested_by=f"cli:{requester()}", reason=args.reason or "",
        )
    except FleetBusy as busy:
        raise CliError(str(busy), ExitCode.ALREADY_RUNNING) from None
    run_id = handle.result_run_id or handle.first_execution_run_id or ""
    waves = [{"name": w.name, "targets": [t.spec.target_id for t in w.targets]} for w in plan.waves]
    output.document(
        "FleetStarted",
        {"fleet": plan.name, "workflowId": handle.id, "runId": run_id, "waves": waves,
         "file": args.file},
    )
    output.note(f"fleet {plan.name} started: workflow {handle.id}, run {run_id}")
    if args.wait:
        return await _report(output, await fleet_result(handle))
    output.note(f"follow it: llmd-rollout status fleet/{plan.name}")
    return ExitCode.SUCCESS


async def status(args: argparse.Namespace, output: Output) -> int:
    name = parse_fleet(args.target)
    session = await open_session(args)
    handle = fleet_handle(session.client, name, args.run_id)
    if args.watch:
        return await _report(output, await _result_or_missing(session, handle, name))
    try:
        progress = await fleet_progress(handle)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        raise _no_such_fleet(session, name) from None
    return await _report(output, progress)


async def control(args: argparse.Namespace, output: Output) -> int:
    name = parse_fleet(args.target)
    if args.command not in FLEET_VERBS:
        raise CliError(f"a fleet takes approve or abort, not {args.command}; "
                       "pause a target's own rollout with its <cluster>/<namespace>/<name>")
    session = await open_session(args)
    handle = fleet_handle(session.client, name)
    request: Any = (
        ApproveRequest(gate=args.gate, by=requester(), note=args.note or "")
        if args.command == "approve" else AbortRequest(by=requester(), reason=args.reason or "")
    )
    try:
        result: ControlResult = await asyncio.wait_for(
            handle.execute_update(args.command, request, result_type=ControlResult),
            UPDATE_SECONDS,
        )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise CliError(f"no worker answered the {args.command} of fleet/{name} within "
                       f"{UPDATE_SECONDS:.0f}s (is one polling {session.task_queue}?)") from None
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        raise _no_such_fleet(session, name) from None
    output.document(
        "ControlResult",
        {"fleet": name, "workflowId": handle.id, "action": args.command,
         "message": result.message, "step": result.step},
    )
    output.note(f"fleet/{name}: {result.message}")
    if args.command == "abort" and getattr(args, "wait", False):
        return await _report(output, await fleet_result(handle))
    return ExitCode.SUCCESS


async def create_schedule(
    args: argparse.Namespace, target: str, task_queue: str, client: Client, output: Output,
    *, window: MaintenanceWindow | None, every: timedelta | None,
) -> int:
    """`schedule create fleet/NAME -f fleet.yaml ...`: the plan is stored in the schedule."""
    if args.file is None:
        raise CliError("a fleet's schedule stores the fleet: give it with -f FLEET.yaml")
    try:
        plan = load_fleet(args.file)
    except SpecError as error:
        raise refusal(error) from None
    if f"fleet/{plan.name}" != target:
        raise CliError(f"{args.file} describes fleet/{plan.name}, not {target}")
    try:
        handle = await create_fleet_schedule(
            client, plan, task_queue=task_queue, cron=args.cron or (), every=every,
            maintenance_window=window, paused=args.paused, note=args.note or "",
        )
    except ScheduleAlreadyRunningError:
        raise CliError(f"{target} already has an upgrade schedule; see 'llmd-rollout schedule "
                       f"describe {target}', or delete it first") from None
    output.document(
        "ScheduleResult", {"target": target, "scheduleId": handle.id, "action": "created"}
    )
    output.note(f"upgrade schedule {handle.id} created")
    return ExitCode.SUCCESS


async def _result_or_missing(session: Session, handle: Any, name: str) -> FleetProgress:
    try:
        return await fleet_result(handle)
    except WorkflowFailureError as failed:
        raise CliError(f"fleet/{name} ended without a result: {failed.cause or failed}") from None
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        raise _no_such_fleet(session, name) from None


def _no_such_fleet(session: Session, name: str) -> CliError:
    return CliError(f"no fleet {name} is known to Temporal namespace {session.namespace!r}; "
                    "start one with 'llmd-rollout apply -f FLEET.yaml'")


async def _report(output: Output, progress: FleetProgress) -> int:
    output.document("FleetStatus", progress.model_dump(mode="json", by_alias=True))
    if not output.json:
        for line in render_fleet(progress):
            output.note(line)
    return exit_code(progress)


def render_fleet(progress: FleetProgress) -> list[str]:
    """The fleet for people: its outcome, each wave and target, then the timeline."""
    lines = [f"fleet {progress.fleet} ({progress.workflow_id}): {progress.outcome.value}, "
             f"onFailure {progress.on_failure}"]
    if progress.gate is not None:
        waiting = "waiting for approval" if progress.gate.approval else "soaking"
        lines.append(f"  gate {progress.gate.name}: {waiting}")
    for number, wave in enumerate(progress.waves, start=1):
        lines.append(f"  wave {number} {wave.name} (maxParallel {wave.max_parallel}): "
                     f"{wave.state.value}")
        for target in wave.targets:
            detail = f"  {target.detail}" if target.detail else ""
            lines.append(f"    {target.name:12} {target.target:40} {target.state.value}{detail}")
    if progress.diagnosis:
        lines.append(f"  {progress.diagnosis}")
    if progress.timeline:
        start = progress.timeline[0].at
        lines.append("  timeline:")
        for event in progress.timeline:
            offset = (event.at - start).total_seconds()
            where = "/".join(p for p in (event.wave, event.target) if p) or "fleet"
            lines.append(f"    +{offset:7.1f}s  {where:16} {event.event}")
    return lines


def exit_code(progress: FleetProgress) -> int:
    if progress.outcome == FleetOutcome.RUNNING:
        gate = progress.gate
        waiting = gate is not None and gate.approval
        return ExitCode.WAITING_FOR_APPROVAL if waiting else ExitCode.SUCCESS
    if progress.outcome == FleetOutcome.SUCCEEDED:
        return ExitCode.SUCCESS
    # Stopped, and the onFailure policy returned what it chose: as a rolled-back rollout.
    states = {t.state for w in progress.waves for t in w.targets}
    return ExitCode.FAILED if TargetState.ROLLBACK_FAILED in states else ExitCode.ROLLED_BACK
