"""Client side: a target's upgrade schedule (create, describe, pause, unpause, trigger, delete).

Where it sits: the CLI's `schedule ...` commands call these. One schedule per target, ID
`upgrade/<target>`, runs UpgradeWorkflow with:
- overlap SKIP: a firing while the previous upgrade still runs is dropped, not queued;
- pause on failure: a failed (rolled-back) upgrade stops the schedule until a person unpauses it,
  so a broken spec is not retried every night;
- a short catch-up window: after a Temporal outage, a missed firing older than that is dropped
  rather than run at a surprising hour.
The per-target guard against a CLI rollout lives in UpgradeWorkflow (it starts the rollout under
the target's workflow ID), since a schedule's workflow IDs carry a timestamp. Each firing carries
the target's search attributes (LlmdTarget, and model and image when the spec is stored), so
`llmd-rollout list --target` finds it. Pause and unpause keep the schedule's note unless given a
new one; a paused schedule reports no next runs (none will happen until it is unpaused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from spec.workflow_io import UpgradeInput
from workflows import search
from workflows.ids import upgrade_schedule_id
from workflows.upgrade import UpgradeWorkflow

DEFAULT_CATCHUP_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class ScheduleStatus:
    """What `llmd-rollout schedule describe` shows."""

    schedule_id: str
    target: str
    paused: bool
    note: str
    next_runs: list[datetime]
    recent_runs: list[tuple[datetime, str]]
    running: list[str]
    skipped_overlap: int
    actions: int


async def create_upgrade_schedule(
    client: Client,
    request: UpgradeInput,
    *,
    task_queue: str,
    cron: Sequence[str] = (),
    every: timedelta | None = None,
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW,
    paused: bool = False,
    note: str = "",
) -> ScheduleHandle:
    """Create the target's upgrade schedule, firing on `cron` expressions and/or `every`."""
    schedule_id = upgrade_schedule_id(request.target)
    action = ScheduleActionStartWorkflow(
        UpgradeWorkflow.run,
        request,
        id=schedule_id,
        task_queue=task_queue,
        static_summary=f"scheduled upgrade of {request.target}",
        typed_search_attributes=_attributes(request),
    )
    schedule = upgrade_schedule_of(
        action, cron=cron, every=every, catchup_window=catchup_window, paused=paused, note=note
    )
    return await client.create_schedule(schedule_id, schedule)


def upgrade_schedule_of(
    action: ScheduleActionStartWorkflow,
    *,
    cron: Sequence[str],
    every: timedelta | None,
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW,
    paused: bool = False,
    note: str = "",
) -> Schedule:
    """The schedule around `action` with the upgrade policy (overlap skip, pause on failure,
    a short catch-up window); a fleet's schedule (rollouts.fleets) uses it too."""
    if not cron and every is None:
        raise ValueError("an upgrade schedule needs cron expressions or an interval (every)")
    return Schedule(
        action=action,
        spec=ScheduleSpec(
            cron_expressions=list(cron),
            intervals=[ScheduleIntervalSpec(every=every)] if every is not None else [],
        ),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=catchup_window,
            pause_on_failure=True,
        ),
        state=ScheduleState(paused=paused, note=note or None),
    )


def _attributes(request: UpgradeInput) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[str]] = [SearchAttributePair(search.TARGET, request.target)]
    spec = request.source.spec
    if spec is not None:
        pairs += [
            SearchAttributePair(search.MODEL, spec.model_service.model_name),
            SearchAttributePair(search.IMAGE, spec.model_service.vllm_image),
        ]
    return TypedSearchAttributes(pairs)


def upgrade_schedule(client: Client, target: str) -> ScheduleHandle:
    return client.get_schedule_handle(upgrade_schedule_id(target))


async def describe_upgrade_schedule(client: Client, target: str) -> ScheduleStatus:
    description = await upgrade_schedule(client, target).describe()
    info = description.info
    recent = [
        (result.started_at, result.action.workflow_id)
        for result in info.recent_actions
        if isinstance(result.action, ScheduleActionExecutionStartWorkflow)
    ]
    running = [
        action.workflow_id
        for action in info.running_actions
        if isinstance(action, ScheduleActionExecutionStartWorkflow)
    ]
    paused = description.schedule.state.paused
    return ScheduleStatus(
        schedule_id=description.id,
        target=target,
        paused=paused,
        note=(description.schedule.state.note or "").strip(),
        # The server still computes the times a paused schedule would fire at; none happens.
        next_runs=[] if paused else list(info.next_action_times),
        recent_runs=recent,
        running=running,
        skipped_overlap=info.num_actions_skipped_overlap,
        actions=info.num_actions,
    )


async def pause_upgrade_schedule(client: Client, target: str, note: str = "") -> None:
    """Pause; `note` replaces the schedule's note, none keeps it (the server would otherwise
    write its own over the one given at create)."""
    handle = upgrade_schedule(client, target)
    await handle.pause(note=note or await _current_note(handle))


async def unpause_upgrade_schedule(client: Client, target: str, note: str = "") -> None:
    handle = upgrade_schedule(client, target)
    await handle.unpause(note=note or await _current_note(handle))


async def _current_note(handle: ScheduleHandle) -> str:
    # An empty note would make the server (and the SDK) write a default one.
    return (await handle.describe()).schedule.state.note or " "


async def trigger_upgrade_schedule(client: Client, target: str) -> None:
    """Fire the schedule now, under its own overlap policy (skipped while an upgrade runs)."""
    await upgrade_schedule(client, target).trigger(overlap=ScheduleOverlapPolicy.SKIP)


async def delete_upgrade_schedule(client: Client, target: str) -> None:
    """Delete the schedule; an upgrade it started keeps running (its rollout is abandoned,
    never cut short)."""
    await upgrade_schedule(client, target).delete()
