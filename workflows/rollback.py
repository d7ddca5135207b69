"""Rollback of a failed or aborted rollout: run the saga's compensations newest first, then wait
for and verify the version that served before.

Where it sits: RolloutWorkflow.run calls `Rollback.recover` after its body failed or was
cancelled. The spec's rollback policy decides whether anything runs (off, or a first install kept
for inspection). An undo that fails is recorded and the older ones still run. The restored
version is waited for and verified under the old spec's names (stored with the snapshot); a
record without one falls back to the desired spec's names.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import (
        DeleteObjectsInput,
        HelmRollbackInput,
        HelmUninstallInput,
        LastKnownGood,
        RestoreInput,
    )
    from spec.rollout import RolloutSpec
    from spec.workflow_io import (
        CompensationRecord,
        FailureReport,
        Outcome,
        Phase,
        RollbackReport,
        RunState,
        StepStatus,
    )
    from workflows import calls
    from workflows.failures import describe_failure
    from workflows.plan import RoleStep
    from workflows.progress import RolloutProgress
    from workflows.saga import Compensation, Saga
    from workflows.steps import RolloutSteps

# Compensations get more patience than steps: giving up on an undo leaves a half-done target.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=15),
)
COMPENSATION_BUDGET_FACTOR = 3


class Rollback:
    def __init__(
        self, spec: RolloutSpec, progress: RolloutProgress, saga: Saga, steps: RolloutSteps
    ) -> None:
        self._spec = spec
        self._progress = progress
        self._saga = saga
        self._steps = steps

    async def recover(
        self,
        failure: FailureReport,
        previous: LastKnownGood | None,
        previous_spec: RolloutSpec | None,
    ) -> RollbackReport | None:
        """Apply the spec's rollback policy: undo newest first, then wait for and verify the
        version that served before (`previous`, restored under `previous_spec`'s names)."""
        progress = self._progress
        policy = self._spec.rollback
        first_install = previous is None or previous.revision is None
        skipped = self._skipped_because(first_install)
        if skipped is not None:
            outcome, why = skipped
            progress.outcome = outcome
            progress.skip(Phase.ROLLBACK, "rollback", why)
            return None
        assert policy.automatic

        progress.state = RunState.ROLLING_BACK
        progress.diagnosis = f"rolling back: {failure.reason.value}: {failure.message}"
        records: list[CompensationRecord] = []
        rollback_failure: FailureReport | None = None
        for compensation in self._saga.newest_first():
            # An undo that fails is recorded and the older ones still run; a cancellation here
            # (a person cancelling the rollback itself) is let through.
            try:
                records.append(await self._compensate(compensation))
            except Exception as error:
                report = describe_failure(error, Phase.ROLLBACK, f"undo/{compensation.undoes}")
                rollback_failure = rollback_failure or report
                records.append(
                    CompensationRecord(
                        undoes=compensation.undoes, action=compensation.action,
                        status="failed", detail=report.message,
                    )
                )

        restored = None if first_install or previous is None else previous.revision
        verified = False
        if rollback_failure is None and not first_install:
            old_spec = previous_spec or self._spec
            try:
                for role in old_spec.strategy.role_order:
                    step = RoleStep(role, 0, True, None, "", verify_after=False)
                    await self._steps.wait_for_role(Phase.ROLLBACK, step, old_spec)
                await self._steps.verify("verify-restored", old_spec, Phase.ROLLBACK)
                verified = True
            except Exception as error:
                rollback_failure = describe_failure(error, Phase.ROLLBACK, progress.step_name)
        progress.outcome = (
            Outcome.ROLLED_BACK if rollback_failure is None else Outcome.ROLLBACK_FAILED
        )
        if rollback_failure is not None:
            progress.diagnosis = (
                f"rollback incomplete: {rollback_failure.reason.value}: {rollback_failure.message}"
            )
        return RollbackReport(
            compensations=records,
            restored_revision=restored,
            verified=verified,
            failure=rollback_failure,
        )

    def _skipped_because(self, first_install: bool) -> tuple[Outcome, str] | None:
        """The outcome and the reason when the policy (or an empty saga) rolls nothing back."""
        policy = self._spec.rollback
        if not self._saga:
            return Outcome.FAILED, "nothing had changed"
        if not policy.automatic:
            return Outcome.FAILED, "automatic rollback is off (spec.rollback.automatic)"
        if first_install and policy.on_first_install_failure == "keep":
            return (
                Outcome.KEPT_FOR_INSPECTION,
                "first install kept for inspection (spec.rollback.onFirstInstallFailure: keep)",
            )
        return None

    async def _compensate(self, compensation: Compensation) -> CompensationRecord:
        name = f"undo/{compensation.undoes}"
        if compensation.kind == "keep":
            self._progress.skip(Phase.ROLLBACK, name, compensation.action)
            return CompensationRecord(
                undoes=compensation.undoes, action=compensation.action, status="kept",
                detail=compensation.reason,
            )
        budget = self._spec.budgets.phase_timeouts.model_service * COMPENSATION_BUDGET_FACTOR
        with self._progress.step(Phase.ROLLBACK, name) as outcome:
            detail = await self._run(compensation, budget)
            outcome.status, outcome.detail = StepStatus.CHANGED, detail
        return CompensationRecord(
            undoes=compensation.undoes, action=compensation.action, status="succeeded",
            detail=detail,
        )

    async def _run(self, compensation: Compensation, budget: timedelta) -> str:
        spec = self._spec
        target = spec.target
        kind = compensation.kind
        release = compensation.release
        if kind in ("helm-rollback", "helm-uninstall"):
            assert release is not None and compensation.release_namespace is not None
            if kind == "helm-rollback":
                assert compensation.revision is not None
                helm = await calls.execute(
                    calls.HELM_ROLLBACK,
                    HelmRollbackInput(
                        target=target, release_name=release.release_name,
                        namespace=compensation.release_namespace, revision=compensation.revision,
                        timeout=budget,
                    ),
                    budget=budget, summary=compensation.action, retry=COMPENSATION_RETRY,
                )
            else:
                helm = await calls.execute(
                    calls.HELM_UNINSTALL,
                    HelmUninstallInput(
                        target=target, release_name=release.release_name,
                        namespace=compensation.release_namespace, timeout=budget,
                    ),
                    budget=budget, summary=compensation.action, retry=COMPENSATION_RETRY,
                )
            return f"{helm.action}" + (f", revision {helm.revision}" if helm.revision else "")
        if kind == "restore-model-service":
            assert compensation.snapshot_revision is not None
            restored = await calls.execute(
                calls.RESTORE_SNAPSHOT,
                RestoreInput(
                    target=target, rollout=spec.metadata.name,
                    revision=compensation.snapshot_revision, timeout=budget,
                ),
                budget=budget, summary=compensation.action, retry=COMPENSATION_RETRY,
            )
            return (
                f"revision {restored.revision}: {restored.apply.count('configured')} configured, "
                f"{restored.apply.count('created')} created, {len(restored.deleted)} deleted"
            )
        deleted = await calls.execute(
            calls.DELETE_OBJECTS,
            DeleteObjectsInput(target=target, rollout=spec.metadata.name, timeout=budget),
            budget=budget, summary=compensation.action, retry=COMPENSATION_RETRY,
        )
        return f"{sum(1 for o in deleted.outcomes if o.action == 'deleted')} objects deleted"
