"""Client side of a fleet: start FleetWorkflow under `fleet/<name>`, read its progress and result.

Where it sits: the CLI's `apply -f fleet.yaml`, `status fleet/NAME`, `approve`/`abort fleet/NAME`
and the tests call these. A fleet is refused while a run of the same fleet is running (the ID,
with id_conflict_policy FAIL); each of its targets is guarded by its own rollout ID inside the
workflow. A failed or aborted fleet ends as a failed workflow whose ApplicationError carries the
FleetProgress; `fleet_result` returns it either way.

A fleet is scheduled like a target: `upgrade/fleet/<name>` (the upgrade policy of
rollouts.schedules), each firing a FleetUpgradeWorkflow that starts the fleet under its own ID;
describe, pause, unpause, trigger and delete are rollouts.schedules' with `fleet/<name>` as target.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from rollouts.schedules import upgrade_schedule_of
from spec.fleet import FleetPlan
from spec.fleet_io import FleetInput, FleetProgress, FleetUpgradeInput
from spec.workflow_io import MaintenanceWindow
from workflows.fleet import FleetWorkflow
from workflows.fleet_schedule import FleetUpgradeWorkflow
from workflows.ids import fleet_workflow_id, upgrade_schedule_id


class FleetBusy(Exception):
    def __init__(self, name: str, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"fleet {name} is already running: workflow {workflow_id}; wait for it, or abort "
            f"it (llmd-rollout abort fleet/{name}), before starting another"
        )


async def start_fleet(
    client: Client, plan: FleetPlan, *, task_queue: str, requested_by: str = "cli",
    reason: str = "",
) -> WorkflowHandle[FleetWorkflow, FleetProgress]:
    workflow_id = fleet_workflow_id(plan.name)
    try:
        return await client.start_workflow(
            FleetWorkflow.run,
            FleetInput(fleet=plan, requested_by=requested_by, reason=reason),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"fleet {plan.name}: {len(plan.waves)} waves",
        )
    except WorkflowAlreadyStartedError:
        raise FleetBusy(plan.name, workflow_id) from None


def fleet_handle(
    client: Client, name: str, run_id: str | None = None
) -> WorkflowHandle[Any, FleetProgress]:
    return client.get_workflow_handle(
        fleet_workflow_id(name), run_id=run_id, result_type=FleetProgress
    )


async def fleet_progress(handle: WorkflowHandle[Any, Any]) -> FleetProgress:
    progress: FleetProgress = await handle.query(FleetWorkflow.progress)
    return progress


async def fleet_result(handle: WorkflowHandle[Any, FleetProgress]) -> FleetProgress:
    """The final FleetProgress, whether the fleet succeeded or failed (see `outcome`)."""
    try:
        return await handle.result()
    except WorkflowFailureError as failed:
        cause = failed.cause
        if isinstance(cause, ApplicationError):
            for detail in cause.details:
                try:
                    return FleetProgress.model_validate(detail)
                except ValidationError:
                    continue
        raise


async def create_fleet_schedule(
    client: Client,
    plan: FleetPlan,
    *,
    task_queue: str,
    cron: Sequence[str] = (),
    every: timedelta | None = None,
    maintenance_window: MaintenanceWindow | None = None,
    paused: bool = False,
    note: str = "",
) -> ScheduleHandle:
    """Create the fleet's upgrade schedule, `upgrade/fleet/<name>`, storing the plan."""
    schedule_id = upgrade_schedule_id(fleet_workflow_id(plan.name))
    action = ScheduleActionStartWorkflow(
        FleetUpgradeWorkflow.run,
        FleetUpgradeInput(fleet=plan, maintenance_window=maintenance_window),
        id=schedule_id,
        task_queue=task_queue,
        static_summary=f"scheduled fleet {plan.name}",
    )
    schedule = upgrade_schedule_of(action, cron=cron, every=every, paused=paused, note=note)
    return await client.create_schedule(schedule_id, schedule)
