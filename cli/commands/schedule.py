"""`llmd-rollout schedule create|list|describe|pause|unpause|trigger|delete`: a target's
scheduled upgrades.

The schedule itself is rollouts.schedules' (one per target, `upgrade/<target>`, overlap skip,
pause on failure); each firing runs UpgradeWorkflow, which starts the rollout under the target's
own workflow ID, so a scheduled upgrade never runs beside a rollout started here. The desired spec
is stored in the schedule (`-f SPEC`) or read by the worker at each firing (`--worker-path`), and
an optional maintenance window skips firings outside it. `fleet/NAME` schedules a fleet
(`-f fleet.yaml`; cli/commands/fleet.py): each firing starts the fleet under `fleet/<name>`.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import time
from typing import Any

from pydantic import ValidationError
from rich.table import Table
from temporalio.client import Client, ScheduleAlreadyRunningError
from temporalio.service import RPCError, RPCStatusCode

from cli.commands import fleet
from cli.commands.common import load_spec_file
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.formatting import cut, flexible, table, time_text
from cli.output import Output
from cli.session import open_session
from cli.targets import parse_target
from rollouts import (
    ScheduleStatus,
    create_upgrade_schedule,
    delete_upgrade_schedule,
    describe_upgrade_schedule,
    pause_upgrade_schedule,
    trigger_upgrade_schedule,
    unpause_upgrade_schedule,
)
from spec.types import parse_duration
from spec.workflow_io import MaintenanceWindow, SpecSource, UpgradeInput
from workflows.ids import UPGRADE_SCHEDULE_PREFIX, upgrade_schedule_id


async def run(args: argparse.Namespace, output: Output) -> int:
    session = await open_session(args)
    client = session.client
    if args.schedule_command == "list":
        return await _list(client, output)
    target = (
        f"fleet/{fleet.parse_fleet(args.target)}" if fleet.is_fleet_argument(args.target)
        else parse_target(args.target)
    )
    try:
        if args.schedule_command == "create":
            return await _create(args, target, session.task_queue, client, output)
        if args.schedule_command == "describe":
            return _describe(await describe_upgrade_schedule(client, target), output)
        return await _act(args.schedule_command, target, args, client, output)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        raise CliError(
            f"{target} has no upgrade schedule; create one with 'llmd-rollout schedule create "
            f"{target} -f SPEC --cron ...' (see 'llmd-rollout schedule list')"
        ) from None


async def _create(
    args: argparse.Namespace, target: str, task_queue: str, client: Client, output: Output
) -> int:
    if (args.file is None) == (args.worker_path is None):
        raise CliError("give the desired spec with exactly one of -f SPEC and --worker-path PATH")
    if not args.cron and args.every is None:
        raise CliError("say when to upgrade with --cron EXPRESSION and/or --every DURATION")
    if fleet.is_fleet_argument(target):
        every = _duration(args.every, "--every") if args.every else None
        return await fleet.create_schedule(args, target, task_queue, client, output,
                                           window=_window(args), every=every)
    if args.file is not None:
        spec = load_spec_file(args.file)
        if spec.target_id != target:
            raise CliError(f"{args.file} describes {spec.target_id}, not {target}")
        source = SpecSource(spec=spec)
    else:
        source = SpecSource(path=args.worker_path)
    request = UpgradeInput(
        target=target, source=source, maintenance_window=_window(args),
        roll_out_unchanged=args.roll_out_unchanged,
    )
    try:
        handle = await create_upgrade_schedule(
            client,
            request,
            task_queue=task_queue,
            cron=args.cron or (),
            every=_duration(args.every, "--every") if args.every else None,
            paused=args.paused,
            note=args.note or "",
        )
    except ScheduleAlreadyRunningError:
        raise CliError(
            f"{target} already has an upgrade schedule; see 'llmd-rollout schedule describe "
            f"{target}', or delete it first"
        ) from None
    output.document(
        "ScheduleResult", {"target": target, "scheduleId": handle.id, "action": "created"}
    )
    output.note(f"upgrade schedule {handle.id} created")
    return ExitCode.SUCCESS


def _window(args: argparse.Namespace) -> MaintenanceWindow | None:
    given = (args.window_start, args.window_duration)
    if all(value is None for value in given) and args.window_days is None:
        return None
    if any(value is None for value in given):
        raise CliError("a maintenance window needs --window-start HH:MM and --window-duration")
    try:
        start = time.fromisoformat(args.window_start)
    except ValueError:
        raise CliError(f"--window-start {args.window_start!r} is not a time like 02:00") from None
    days = args.window_days.split(",") if args.window_days else None
    try:
        return MaintenanceWindow.model_validate(
            {
                **({"days": days} if days else {}),
                "start": start,
                "duration": args.window_duration,
            }
        )
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise CliError(f"invalid maintenance window: {field}: {problem['msg']}") from None


def _duration(text: str, flag: str) -> Any:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise CliError(f"{flag} {text!r}: {error}") from None


async def _act(
    action: str, target: str, args: argparse.Namespace, client: Client, output: Output
) -> int:
    actions: dict[str, Callable[[], Awaitable[None]]] = {
        "pause": lambda: pause_upgrade_schedule(client, target, args.note or ""),
        "unpause": lambda: unpause_upgrade_schedule(client, target, args.note or ""),
        "trigger": lambda: trigger_upgrade_schedule(client, target),
        "delete": lambda: delete_upgrade_schedule(client, target),
    }
    await actions[action]()
    done = {"pause": "paused", "unpause": "unpaused", "trigger": "triggered", "delete": "deleted"}
    schedule_id = upgrade_schedule_id(target)
    output.document(
        "ScheduleResult", {"target": target, "scheduleId": schedule_id, "action": done[action]}
    )
    output.note(f"upgrade schedule {schedule_id} {done[action]}")
    return ExitCode.SUCCESS


def _describe(status: ScheduleStatus, output: Output) -> int:
    output.document(
        "ScheduleDescription",
        {
            "target": status.target,
            "scheduleId": status.schedule_id,
            "paused": status.paused,
            "note": status.note,
            "nextRuns": [moment.isoformat() for moment in status.next_runs],
            "recentRuns": [
                {"startedAt": moment.isoformat(), "workflowId": workflow_id}
                for moment, workflow_id in status.recent_runs
            ],
            "running": status.running,
            "skippedOverlap": status.skipped_overlap,
            "actions": status.actions,
        },
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_row("schedule", status.schedule_id)
    grid.add_row("target", status.target)
    grid.add_row("state", "paused" if status.paused else "active")
    if status.note:
        grid.add_row("note", status.note)
    grid.add_row(
        "next runs",
        ", ".join(time_text(m) for m in status.next_runs[:3])
        or ("- (paused: 'llmd-rollout schedule unpause " + status.target + "')"
            if status.paused else "-"),
    )
    grid.add_row("running", ", ".join(status.running) or "-")
    recent = [f"{time_text(moment)} {workflow_id}" for moment, workflow_id in status.recent_runs]
    grid.add_row("recent runs", "\n".join(recent[-5:]) or "-")
    grid.add_row("fired", f"{status.actions} times, {status.skipped_overlap} skipped (overlap)")
    output.show(grid)
    return ExitCode.SUCCESS


async def _list(client: Client, output: Output) -> int:
    items: list[dict[str, Any]] = []
    async for entry in await client.list_schedules():
        if not entry.id.startswith(UPGRADE_SCHEDULE_PREFIX):
            continue
        state = entry.schedule.state if entry.schedule is not None else None
        paused = bool(state and state.paused)
        # A paused schedule fires never (until unpaused), whatever times the server computes.
        next_runs = entry.info.next_action_times if entry.info is not None and not paused else []
        items.append(
            {
                "target": entry.id.removeprefix(UPGRADE_SCHEDULE_PREFIX),
                "scheduleId": entry.id,
                "paused": paused,
                "note": ((state.note if state else None) or "").strip(),
                "nextRuns": [moment.isoformat() for moment in next_runs],
            }
        )
    items.sort(key=lambda item: item["target"])
    output.document("ScheduleList", {"items": items})
    if not items:
        output.note("no upgrade schedules")
        return ExitCode.SUCCESS
    grid = table("TARGET", "STATE", "NEXT RUN", "NOTE")
    flexible(grid, "NOTE")
    for item in items:
        upcoming: list[str] = item["nextRuns"]
        grid.add_row(
            item["target"], "paused" if item["paused"] else "active",
            time_text(upcoming[0]) if upcoming else "-", cut(item["note"]),
        )
    output.show(grid)
    return ExitCode.SUCCESS
