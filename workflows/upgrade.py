"""UpgradeWorkflow: what a target's upgrade schedule runs: start the rollout under the target's ID.

Where it sits: a Temporal Schedule (rollouts.schedules) starts it with a timestamped workflow ID,
so the schedule's own overlap policy cannot keep it off a target a person is already rolling out
from the CLI. It therefore starts RolloutWorkflow as a child under the target's workflow ID
(`rollout/<target>`): the server refuses that start while any rollout of the target runs, and the
upgrade ends `skipped: running <id>`. The child is abandoned if this workflow is closed early (a
rollout is never cut short because its schedule was deleted); otherwise this workflow waits for it
and fails when it fails, so the schedule pauses after a failed upgrade (pause on failure).

Before that: outside the maintenance window the upgrade is skipped; the desired spec comes stored
in the input or from a file the worker reads (an activity: no I/O in workflow code). A desired
spec that is the target's last-known-good one ends `unchanged` after one read: no
rollout, so no run in the target's history and a dozen events instead of a full rollout's
(UpgradeInput.roll_out_unchanged asks for the rollout anyway). The outcome is upserted
(LlmdOutcome), so `llmd-rollout list` shows what each firing did.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import SnapshotLookupInput
    from spec.reasons import FailureReason
    from spec.rollout import RolloutSpec
    from spec.workflow_io import RolloutInput, RolloutResult, UpgradeInput, UpgradeResult
    from workflows import calls, search
    from workflows.children import start_detached
    from workflows.ids import rollout_workflow_id
    from workflows.rollout import RolloutWorkflow

SPEC_FILE_BUDGET = timedelta(minutes=1)
LAST_KNOWN_GOOD_BUDGET = timedelta(minutes=2)
# Runs started before these existed replay without them (workflows/README.md).
UNCHANGED_PATCH = "upgrade-unchanged-shortcut"
UNCHANGED = "unchanged"


@workflow.defn(name="UpgradeWorkflow")
class UpgradeWorkflow:
    @workflow.run
    async def run(self, request: UpgradeInput) -> UpgradeResult:
        patched = workflow.patched(UNCHANGED_PATCH)
        window = request.maintenance_window
        if window is not None and not window.contains(workflow.now()):
            outside = f"skipped: outside the maintenance window ({window.describe()})"
            return self._skipped(request, outside, patched)

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

        if patched and not request.roll_out_unchanged:
            unchanged = await self._unchanged(spec)
            if unchanged is not None:
                workflow.set_current_details(unchanged)
                search.update(outcome=UNCHANGED)
                return UpgradeResult(target=request.target, outcome=UNCHANGED, skipped=True)

        rollout_id = rollout_workflow_id(spec.target_id)
        schedule = workflow.info().workflow_id
        try:
            child = await start_detached(
                RolloutWorkflow.run,
                RolloutInput(spec=spec, requested_by="schedule", reason=f"scheduled by {schedule}"),
                workflow_id=rollout_id, summary=f"scheduled upgrade of {spec.target_id}",
            )
        except WorkflowAlreadyStartedError as running:
            return self._skipped(request, f"skipped: running {running.workflow_id}", patched)

        workflow.set_current_details(f"rollout `{rollout_id}` started; waiting for it to finish")
        try:
            result: RolloutResult = await child
        except ChildWorkflowError as failed:
            if patched:
                search.update(outcome="failed")
            raise ApplicationError(
                f"the scheduled rollout {rollout_id} failed: {failed.cause or failed}",
                type=_reason_of(failed),
                non_retryable=True,
            ) from failed
        workflow.set_current_details(f"rollout `{rollout_id}` {result.outcome.value}")
        if patched:
            search.update(outcome=result.outcome.value)
        return UpgradeResult(
            target=request.target,
            outcome=result.outcome.value,
            skipped=False,
            rollout_workflow_id=rollout_id,
            rollout=result,
        )

    async def _unchanged(self, spec: RolloutSpec) -> str | None:
        """Why no rollout is needed, or None. The whole desired spec must be the one the
        last-known-good revision was rolled out with (stored with its snapshot): the revision
        hash covers only the model service, not the releases or the strategy."""
        recorded = await calls.execute(
            calls.READ_LAST_KNOWN_GOOD,
            SnapshotLookupInput(target=spec.target, rollout=spec.metadata.name),
            budget=LAST_KNOWN_GOOD_BUDGET, summary="read the last-known-good record",
        )
        if recorded.revision is None or recorded.spec is None:
            return None
        # The target's connection details (kubeconfig path) are the worker's, not the rollout's.
        if recorded.spec.model_copy(update={"target": spec.target}) != spec:
            return None
        return (
            f"unchanged: {spec.target_id} already runs revision {recorded.revision} "
            "(its last-known-good spec is the desired one)"
        )

    def _skipped(
        self, request: UpgradeInput, outcome: str, patched: bool = False
    ) -> UpgradeResult:
        workflow.set_current_details(outcome)
        if patched:
            search.update(outcome="skipped")
        return UpgradeResult(target=request.target, outcome=outcome, skipped=True)


def _reason_of(failed: ChildWorkflowError) -> str:
    cause = failed.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return FailureReason.ROLLOUT_TIMEOUT.value
