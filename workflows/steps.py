"""The journaled steps a rollout is made of: an activity call with its outcome in the history, a
helm release with its undo, a model-service apply, a role's wait, a verification.

Where it sits: RolloutWorkflow's phases and its rollback (workflows/rollback.py) call these; each
enters its step in the RolloutProgress (the phase search attribute, the UI), journals it, and
registers the saga compensation of what it changed once it succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import (
        ApplyModelServiceInput,
        ApplyModelServiceResult,
        HelmReleaseInput,
        HelmStatusInput,
        ModelLoadInput,
        ModelServicePart,
        VerificationResult,
        VerifyInput,
        WaitForLwsInput,
        WaitForObjectInput,
        WaitResult,
    )
    from spec.reasons import FailureReason
    from spec.rollout import HelmRelease, RolloutSpec
    from spec.workflow_io import Phase, StepStatus
    from workflows import calls
    from workflows.calls import ActivityRef
    from workflows.failures import StepFailed
    from workflows.plan import RoleStep
    from workflows.progress import RolloutProgress
    from workflows.saga import Saga, helm_compensation

In = TypeVar("In")
Out = TypeVar("Out")


class RolloutSteps:
    def __init__(self, spec: RolloutSpec, progress: RolloutProgress, saga: Saga) -> None:
        self._spec = spec
        self._progress = progress
        self._saga = saga

    async def call(
        self,
        phase: Phase,
        name: str,
        ref: ActivityRef[In, Out],
        arg: In,
        *,
        budget: timedelta,
        summary: str,
        status: Callable[[Out], StepStatus],
        detail: Callable[[Out], str] | None = None,
    ) -> Out:
        """One journaled step: an activity call with its outcome in the history."""
        with self._progress.step(phase, name) as outcome:
            result = await calls.execute(ref, arg, budget=budget, summary=summary)
            outcome.status = status(result)
            outcome.detail = detail(result) if detail else None
        return result

    async def helm_release(
        self, phase: Phase, step: str, release: HelmRelease, *, shared: bool, timeout: timedelta
    ) -> None:
        """`helm upgrade --install`, registering the undo only once it succeeded.

        The state before is read first and kept in history: a retried upgrade (say after a
        worker was killed) reports `unchanged`, yet the undo must still roll back what the
        first attempt changed, so the decision compares revisions, not the last answer.
        """
        target = self._spec.target
        namespace = release.namespace or target.namespace
        before = await calls.execute(
            calls.HELM_RELEASE_STATUS,
            HelmStatusInput(target=target, release_name=release.release_name, namespace=namespace),
            budget=timeout, summary=f"helm status {release.release_name}",
        )
        chart = release.chart.version or release.chart.path or ""
        result = await self.call(
            phase, step, calls.HELM_UPGRADE_INSTALL,
            HelmReleaseInput(target=target, release=release, timeout=timeout),
            budget=timeout, summary=f"helm upgrade --install {release.release_name} {chart}",
            status=lambda r: (
                StepStatus.UNCHANGED if r.action == "unchanged" else StepStatus.CHANGED
            ),
            detail=lambda r: (
                f"{r.action}, revision {r.revision}"
                + (f" (repaired: {r.repaired})" if r.repaired else "")
            ),
        )
        if result.repaired:
            self._progress.metrics.helm_repaired()
        compensation = helm_compensation(step, release, namespace, before, result, shared)
        if compensation is not None:
            self._saga.register(compensation)

    async def apply_model_service(
        self,
        part: ModelServicePart,
        name: str,
        partition: int | None,
        max_surge: int | None,
        timeout: timedelta,
    ) -> ApplyModelServiceResult:
        where = f" at partition {partition}" if partition is not None else ""
        result = await self.call(
            Phase.MODEL_SERVICE, name, calls.APPLY_MODEL_SERVICE,
            ApplyModelServiceInput(
                spec=self._spec, part=part, partition=partition, max_surge=max_surge,
            ),
            budget=timeout, summary=f"apply model service: {part}{where}",
            status=lambda r: StepStatus.CHANGED if r.apply.changed else StepStatus.UNCHANGED,
            detail=lambda r: (
                f"{r.apply.count('created')} created, {r.apply.count('configured')} configured, "
                f"{r.apply.count('unchanged')} unchanged"
            ),
        )
        if part != "shared" and part != "all":
            self._progress.note_partition(part, partition or 0)
        else:
            self._progress.note_revision(result.revision)
        return result

    async def wait_until(
        self,
        phase: Phase,
        name: str,
        ref: ActivityRef[WaitForObjectInput, WaitResult],
        object_name: str,
        timeout: timedelta,
        summary: str,
    ) -> None:
        """A step that waits for one object's condition (the wait ends itself at `timeout`
        with its own reason and what it last saw)."""
        await self.call(
            phase, name, ref,
            WaitForObjectInput(target=self._spec.target, name=object_name, timeout=timeout),
            budget=timeout, summary=summary,
            status=lambda r: StepStatus.PASSED, detail=lambda r: r.detail,
        )

    async def wait_for_role(self, phase: Phase, step: RoleStep, spec: RolloutSpec) -> None:
        """The role's LWS rollout and vLLM on every new pod, side by side; the first failure
        (each wait diagnoses pod trouble as it appears) cancels the other. `spec` names what
        to wait for: the desired spec, or the restored one during a rollback."""
        role = step.role
        partition = step.partition or 0
        budget = spec.budgets.model_load
        name = f"model-load/{step.name}" if phase == Phase.MODEL_LOAD else f"wait/{role}"
        with self._progress.step(phase, name) as outcome:
            _, loaded = await calls.both(
                calls.execute(
                    calls.WAIT_FOR_LWS,
                    WaitForLwsInput(
                        target=spec.target, name=spec.model_service.lws_name(role),
                        partition=partition, timeout=budget,
                    ),
                    budget=budget,
                    summary=f"wait for the {role} LeaderWorkerSet rollout (partition {partition})",
                ),
                calls.execute(
                    calls.WAIT_FOR_MODEL_LOAD,
                    ModelLoadInput(spec=spec, role=role, partition=partition),
                    budget=budget,
                    summary=f"wait for vLLM to serve on the {role} pods (partition {partition})",
                ),
            )
            self._progress.note_loaded(role, partition, loaded)
            outcome.detail = f"{len(loaded.pods)} pods serving in {loaded.elapsed_seconds:.1f}s"

    async def verify(self, name: str, spec: RolloutSpec, phase: Phase = Phase.VERIFY) -> None:
        result = await self.call(
            phase, name, calls.VERIFY_GATEWAY, VerifyInput(spec=spec),
            budget=spec.budgets.phase_timeouts.verify,
            summary="verify through the gateway: models, completion, disaggregation",
            status=lambda r: StepStatus.PASSED if r.passed else StepStatus.FAILED,
            detail=_verification_detail,
        )
        if not result.passed:
            failed = [check for check in result.checks if not check.passed]
            raise StepFailed(
                FailureReason.VERIFICATION_FAILED,
                "; ".join(f"{check.name}: {check.detail}" for check in failed),
                {"checks": [check.model_dump(mode="json") for check in failed]},
            )


def _verification_detail(result: VerificationResult) -> str:
    return "; ".join(
        f"{check.name} {'ok' if check.passed else 'FAILED'}: {check.detail}"
        for check in result.checks
    )
