"""UpgradeWorkflow: what a target's upgrade schedule runs: start the rollout under the target's ID.

Where it sits: a Temporal Schedule (rollouts.schedules) starts it with a timestamped workflow ID,
so the schedule's own overlap policy cannot keep it off a target a person is already rolling out
from the CLI. It therefore starts RolloutWorkflow as a child under the target's workflow ID
(`rollout/<target>`): the server refuses that start while any rollout of the target runs, and the
upgrade ends `skipped: running <id>`. The child is abandoned if this workflow is closed early (a
rollout is never cut short because its schedule was deleted); otherwise this workflow waits for it
and fails when it fails, so the schedule pauses after a failed upgrade (pause on failure).

Before that: outside the maintenance window the upgrade is skipped; the desired spec comes stored
in the input or from a file the worker reads (an activity: no I/O in workflow code).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from spec.reasons import FailureReason
    from spec.workflow_io import RolloutInput, RolloutResult, UpgradeInput, UpgradeResult
    from workflows import calls
    from workflows.ids import rollout_workflow_id
    from workflows.rollout import RolloutWorkflow

SPEC_FILE_BUDGET = timedelta(minutes=1)


@workflow.defn(name="UpgradeWorkflow")
class UpgradeWorkflow:
    @workflow.run
    async def run(self, request: UpgradeInput) -> UpgradeResult:
        window = request.maintenance_window
        if window is not None and not window.contains(workflow.now()):
            outside = f"skipped: outside the maintenance window ({window.describe()})"
            return self._skipped(request, outside)

        spec = request.source.spec
        if spec is None:
            assert request.source.path is not None
            workflow.set_current_details(f"reading the desired spec from {request.source.path}")
            spec = await calls.execute(
                calls.LOAD_SPEC_FILE, request.source.path,
                budget=SPEC_FILE_BUDGET, summary=f"read spec {request.source.path}",
            )
        if spec.target_id != request.target:
            raise ApplicationError(
                f"the spec describes target {spec.target_id}, but this schedule upgrades "
                f"{request.target}; fix the spec's target or metadata.name",
                type=FailureReason.INVALID_SPEC.value,
                non_retryable=True,
            )

        rollout_id = rollout_workflow_id(spec.target_id)
        schedule = workflow.info().workflow_id
        try:
            child = await workflow.start_child_workflow(
                RolloutWorkflow.run,
                RolloutInput(spec=spec, requested_by="schedule", reason=f"scheduled by {schedule}"),
                id=rollout_id,
                task_queue=workflow.info().task_queue,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary=f"scheduled upgrade of {spec.target_id}",
            )
        except WorkflowAlreadyStartedError as running:
            return self._skipped(request, f"skipped: running {running.workflow_id}")

        workflow.set_current_details(f"rollout `{rollout_id}` started; waiting for it to finish")
        try:
            result: RolloutResult = await child
        except ChildWorkflowError as failed:
            raise ApplicationError(
                f"the scheduled rollout {rollout_id} failed: {failed.cause or failed}",
                type=_reason_of(failed),
                non_retryable=True,
            ) from failed
        workflow.set_current_details(f"rollout `{rollout_id}` {result.outcome.value}")
        return UpgradeResult(
            target=request.target,
            outcome=result.outcome.value,
            skipped=False,
            rollout_workflow_id=rollout_id,
            rollout=result,
        )

    def _skipped(self, request: UpgradeInput, outcome: str) -> UpgradeResult:
        workflow.set_current_details(outcome)
        return UpgradeResult(target=request.target, outcome=outcome, skipped=True)


def _reason_of(failed: ChildWorkflowError) -> str:
    cause = failed.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return FailureReason.ROLLOUT_TIMEOUT.value
