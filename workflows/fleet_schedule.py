"""FleetUpgradeWorkflow: what a fleet's schedule runs: start the fleet under `fleet/<name>`.

Where it sits: a Temporal Schedule (rollouts.fleets.create_fleet_schedule, ID
`upgrade/fleet/<name>`) starts it with a timestamped workflow ID, as a target's schedule starts
UpgradeWorkflow. It starts FleetWorkflow as a child under the fleet's own ID, so a firing while
that fleet runs (started from the CLI or an earlier firing) ends `skipped: running <id>`, and
each target stays guarded by its own rollout ID inside the fleet. Outside the maintenance window
the firing is skipped. The child is abandoned if this workflow is closed early; otherwise this
workflow waits and fails when the fleet fails, so the schedule pauses after a failed fleet.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from spec.fleet_io import FleetInput, FleetProgress, FleetUpgradeInput, FleetUpgradeResult
    from workflows.children import start_detached
    from workflows.fleet import FLEET_FAILED, FleetWorkflow
    from workflows.ids import fleet_workflow_id


@workflow.defn(name="FleetUpgradeWorkflow")
class FleetUpgradeWorkflow:
    @workflow.run
    async def run(self, request: FleetUpgradeInput) -> FleetUpgradeResult:
        name = request.fleet.name
        window = request.maintenance_window
        if window is not None and not window.contains(workflow.now()):
            return self._skipped(name, f"skipped: outside the maintenance window "
                                 f"({window.describe()})")
        fleet_id = fleet_workflow_id(name)
        try:
            child = await start_detached(
                FleetWorkflow.run,
                FleetInput(fleet=request.fleet, requested_by="schedule",
                           reason=f"scheduled by {workflow.info().workflow_id}"),
                workflow_id=fleet_id, summary=f"scheduled fleet {name}",
            )
        except WorkflowAlreadyStartedError as running:
            return self._skipped(name, f"skipped: running {running.workflow_id}")
        workflow.set_current_details(f"fleet `{fleet_id}` started; waiting for it to finish")
        try:
            result: FleetProgress = await child
        except ChildWorkflowError as failed:
            raise ApplicationError(
                f"the scheduled fleet {fleet_id} failed: {failed.cause or failed}",
                type=FLEET_FAILED, non_retryable=True,
            ) from failed
        workflow.set_current_details(f"fleet `{fleet_id}` {result.outcome.value}")
        return FleetUpgradeResult(
            fleet=name, outcome=result.outcome.value, skipped=False, fleet_workflow_id=fleet_id
        )

    def _skipped(self, name: str, outcome: str) -> FleetUpgradeResult:
        workflow.set_current_details(outcome)
        return FleetUpgradeResult(fleet=name, outcome=outcome, skipped=True)
