"""RolloutWorkflow: converge one target to a spec, or return it to the version that served before.

Where it sits: started by the CLI (rollouts.starting) or by a scheduled UpgradeWorkflow under the
target's workflow ID; it runs the nine phases (docs/architecture.md, "Phases") through the
activities named in workflows.calls, and on failure or abort runs the saga compensations in
reverse, then waits for and verifies the restored version. An upgrade is the same workflow with a
changed spec: phases with nothing to change report `unchanged` (helm and server-side apply detect
it) and cost seconds.

Control: updates `approve`, `pause`, `resume`, `abort` (validated: a request that does not apply
is rejected with a sentence saying why) and the `progress` query. The Temporal UI shows the phase,
step, state and last diagnosis through `workflow.set_current_details`, and each activity has a
summary. Per-pod progress lives in the running activity's heartbeat details, which the workflow
cannot read; the client overlays them on the query result (rollouts.observing), which keeps the
history free of polling (a long model load is one activity, whatever its length).

Failure result: the workflow fails with an ApplicationError whose type is the FailureReason and
whose single detail is the RolloutResult (what failed, with evidence, and what was restored).

Layout: this module keeps the phase sequence. The journaled steps live in workflows.steps, gates,
pause and abort in workflows.control, the rollback in workflows.rollback, and what people see
(state, milestones, UI text, the result) in workflows.progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from manifests.labels import epp_name
    from spec.activity_io import (
        ApplyCrdsInput,
        EnsureNamespaceInput,
        HfTokenSecretInput,
        LastKnownGood,
        MarkLastKnownGoodInput,
        PreflightInput,
        PreflightReport,
        SnapshotInput,
        SnapshotLookupInput,
    )
    from spec.crds import BUNDLE_CRDS, CrdBundleName
    from spec.reasons import FailureReason
    from spec.rollout import CrdBundle, RolloutSpec
    from spec.types import format_duration
    from spec.workflow_io import (
        AbortRequest,
        ApproveRequest,
        ControlResult,
        FailureReport,
        PauseRequest,
        Phase,
        Progress,
        ResumeRequest,
        RollbackReport,
        RolloutInput,
        RolloutResult,
        RunState,
        StepStatus,
    )
    from workflows import calls, search
    from workflows.analysis import RolloutAnalysis
    from workflows.cluster_calls import ClusterAsks
    from workflows.control import RolloutControl
    from workflows.failures import StepFailed, describe_failure
    from workflows.plan import RolloutPlan, plan_rollout
    from workflows.progress import MILESTONES_AFTER, MILESTONES_BEFORE, RolloutProgress
    from workflows.rollback import Rollback
    from workflows.saga import Compensation, Saga
    from workflows.steps import RolloutSteps

# Exceptions that mean the workflow code itself cannot go on (replay mismatch, a query mutating
# state): rolling back from there would issue commands from a broken state.
_NOT_ROLLOUT_FAILURES = (workflow.NondeterminismError, workflow.ReadOnlyContextError)
# A first install's roles created before the endpoint picker and the route are waited for;
# histories recorded before it replay the waits first.
ROLES_WITH_SHARED_PATCH = "first-install-roles-with-shared-objects"


@workflow.defn(name="RolloutWorkflow")
class RolloutWorkflow:
    @workflow.init
    def __init__(self, request: RolloutInput) -> None:
        self._spec = request.spec
        self._saga = Saga()
        self._progress = RolloutProgress(request.spec)
        self._control = RolloutControl(self._progress)
        self._steps = RolloutSteps(request.spec, self._progress, self._saga)
        self._rollback = Rollback(request.spec, self._progress, self._saga, self._steps)
        self._analysis = RolloutAnalysis(request.spec, self._steps, self._control)
        self._cluster = ClusterAsks(request.spec, self._progress, self._saga, self._steps)
        self._previous: LastKnownGood | None = None
        self._previous_spec: RolloutSpec | None = None
        self._revision: str | None = None

    # --- the run --------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        started = workflow.now()
        spec, progress = self._spec, self._progress
        search.announce(
            spec.target_id, spec.model_service.model_name, spec.model_service.vllm_image,
            progress.phase.value,
        )
        progress.publish()
        progress.metrics.started()
        failure: FailureReport | None = None
        rollback: RollbackReport | None = None
        try:
            await self._control.start(self._converge())
        # Cancellation (abort, or a cancel request) and every error roll back. Not BaseException:
        # the SDK tears down evicted runs with exceptions of its own that must pass through.
        except (asyncio.CancelledError, Exception) as error:
            if isinstance(error, _NOT_ROLLOUT_FAILURES):
                raise
            failure = describe_failure(
                error, progress.phase, progress.step_name, self._control.abort_reason()
            )
            progress.diagnosis = f"{failure.reason.value}: {failure.message}"
            rollback = await self._rollback.recover(failure, self._previous, self._previous_spec)
        else:
            progress.succeeded()
        await self._cluster.finish(progress.outcome.value)
        previous_revision = self._previous.revision if self._previous else None
        result = progress.result(started, self._revision, previous_revision, failure, rollback)
        progress.metrics.finished(result)
        progress.state = RunState.FINISHED
        progress.final = result
        progress.enter(Phase.DONE, "finished")
        search.update(outcome=progress.outcome.value)
        progress.publish()
        if failure is None:
            return result
        raise ApplicationError(
            f"{failure.reason.value} at {failure.step}: {failure.message} "
            f"(outcome: {progress.outcome.value})",
            result,
            type=failure.reason.value,
            non_retryable=True,
        )

    async def _converge(self) -> None:
        """Preflight, then each phase behind a checkpoint (where a requested pause holds)."""
        plan, report = await self._preflight()
        self._progress.reached("preflight")
        phases: list[tuple[str | None, Callable[[], Awaitable[None]]]] = [
            *zip(
                MILESTONES_BEFORE[1:],
                (self._dependencies, self._gateway_provider, self._namespace, self._infra),
                strict=True,
            ),
            # Each model-service step of the plan is a milestone of its own.
            (None, partial(self._model_service, plan, report)),
            *zip(MILESTONES_AFTER, (self._verify, self._record), strict=True),
        ]
        for milestone, phase in phases:
            # A phase asked for with an earlier one is current already: no step boundary lies
            # before it.
            if milestone not in {asked.value for asked in self._cluster.asked_early}:
                await self._control.checkpoint()
            await phase()
            if milestone is not None:
                self._progress.reached(milestone)

    # --- phases ---------------------------------------------------------------------------

    async def _preflight(self) -> tuple[RolloutPlan, PreflightReport]:
        spec = self._spec
        timeouts = spec.budgets.phase_timeouts
        previous = await self._steps.call(
            Phase.PREFLIGHT, "last-known-good", calls.READ_LAST_KNOWN_GOOD,
            SnapshotLookupInput(target=spec.target, rollout=spec.metadata.name),
            budget=timeouts.preflight, summary="read the last-known-good record",
            status=lambda r: StepStatus.PASSED,
            detail=lambda r: f"revision {r.revision}" if r.revision else "nothing recorded",
        )
        self._previous = previous
        self._previous_spec = _previous_spec(previous, spec)
        self._progress.note_stable(previous.revision, self._previous_spec)
        plan = plan_rollout(spec, previous.revision, self._previous_spec)
        self._progress.planned(plan)
        # The capacity hold waits for GPUs other rollouts hold or use, when the spec asks it to.
        waits = spec.budgets.capacity_wait
        report = await self._steps.call(
            Phase.PREFLIGHT, "preflight", calls.PREFLIGHT,
            PreflightInput(spec=spec, roles=list(plan.changed_roles)),
            budget=timeouts.preflight, summary="check the cluster and plan capacity",
            status=lambda r: StepStatus.PASSED if r.capacity.fits or waits else StepStatus.FAILED,
            detail=lambda r: (
                f"{r.capacity.gpus_asked} GPUs asked, {r.capacity.gpus_available} available"
                + ("" if r.capacity.fits else f"; waits {format_duration(waits)} for capacity")
            ),
        )
        if not report.capacity.fits and not waits:
            raise StepFailed(
                FailureReason.INSUFFICIENT_CAPACITY,
                f"the cluster cannot hold the rollout: {report.capacity.gpus_asked} GPUs asked, "
                f"{report.capacity.gpus_available} available",
                {"plan": report.capacity.render()},
            )
        return plan, await self._cluster.hold(plan, report)

    async def _dependencies(self) -> None:
        if await self._cluster.dependencies():
            return
        spec = self._spec
        deps = spec.dependencies
        timeout = spec.budgets.phase_timeouts.dependencies
        bundles: tuple[tuple[CrdBundleName, CrdBundle], ...] = (
            ("gateway-api", deps.gateway_api_crds),
            ("inference-extension", deps.inference_extension_crds),
        )
        for name, bundle in bundles:
            verb = "check" if bundle.already_installed else "install"
            await self._steps.call(
                Phase.DEPENDENCIES, f"crds/{name}", calls.APPLY_CRDS,
                ApplyCrdsInput(
                    target=spec.target, bundle=bundle, bundle_name=name,
                    expected=list(BUNDLE_CRDS[name]), timeout=timeout,
                ),
                budget=timeout, summary=f"{verb} the {name} CRDs {bundle.version}",
                status=lambda r: (
                    StepStatus.SKIPPED if r.skipped
                    else StepStatus.CHANGED if r.apply.changed
                    else StepStatus.UNCHANGED
                ),
                detail=lambda r: f"{len(r.established)} CRDs established",
            )
        lws = deps.leader_worker_set
        if lws.release is None:
            self._progress.skip(Phase.DEPENDENCIES, "lws-controller", "already installed (spec)")
        else:
            await self._steps.helm_release(
                Phase.DEPENDENCIES, "lws-controller", lws.release, shared=True, timeout=timeout
            )

    async def _gateway_provider(self) -> None:
        provider = self._spec.gateway_provider
        timeout = self._spec.budgets.phase_timeouts.gateway_provider
        if not provider.releases:
            self._progress.skip(
                Phase.GATEWAY_PROVIDER, "gateway-provider",
                f"provider type {provider.type}: nothing to install",
            )
        elif await self._cluster.gateway_provider():
            return
        for release in provider.releases:
            await self._steps.helm_release(
                Phase.GATEWAY_PROVIDER, f"gateway-provider/{release.release_name}", release,
                shared=True, timeout=timeout,
            )

    async def _namespace(self) -> None:
        spec = self._spec
        timeout = spec.budgets.phase_timeouts.namespace
        await self._steps.call(
            Phase.NAMESPACE, "namespace", calls.ENSURE_NAMESPACE,
            EnsureNamespaceInput(target=spec.target),
            budget=timeout, summary=f"ensure namespace {spec.target.namespace}",
            status=lambda r: StepStatus.CHANGED if r.changed else StepStatus.UNCHANGED,
        )
        token = spec.model_service.hf_token
        await self._steps.call(
            Phase.NAMESPACE, "hf-token-secret", calls.ENSURE_HF_TOKEN_SECRET,
            HfTokenSecretInput(target=spec.target, hf_token=token),
            budget=timeout, summary=f"ensure Secret {token.secret_name} (key {token.secret_key})",
            status=lambda r: (
                StepStatus.CHANGED if r.action in ("created", "configured")
                else StepStatus.UNCHANGED
            ),
            detail=lambda r: f"Secret {r.name} {r.action}",
        )

    async def _infra(self) -> None:
        spec = self._spec
        timeout = spec.budgets.phase_timeouts.infra
        await self._steps.helm_release(
            Phase.INFRA, "infra", spec.infra, shared=False, timeout=timeout
        )
        await self._steps.wait_until(
            Phase.INFRA, "gateway-programmed", calls.WAIT_FOR_GATEWAY, spec.infra.gateway,
            timeout, f"wait until Gateway {spec.infra.gateway} is Programmed",
        )

    async def _model_service(self, plan: RolloutPlan, report: PreflightReport) -> None:
        spec, steps = self._spec, self._steps
        timeout = spec.budgets.phase_timeouts.model_service
        shared = await steps.apply_model_service("shared", "shared", None, None, timeout)
        self._revision = shared.revision
        previous_revision = self._previous.revision if self._previous is not None else None
        if previous_revision is None:
            self._saga.register(Compensation("model-service", "delete-model-service"))
        else:
            self._saga.register(
                Compensation(
                    "model-service", "restore-model-service", snapshot_revision=previous_revision
                )
            )
        surge = report.capacity.max_surge
        # A first install creates its roles right away: nothing serves yet that a broken
        # endpoint picker could take down, and the pods' pulls and model loads (minutes) start
        # while the picker and the route come up. An upgrade touches no role before both are.
        early = plan.first_install and workflow.patched(ROLES_WITH_SHARED_PATCH)
        if early:
            await self._create_roles(plan, surge, timeout)
        await steps.wait_until(
            Phase.MODEL_SERVICE, "epp-available", calls.WAIT_FOR_DEPLOYMENT, epp_name(spec),
            timeout, "wait until the endpoint picker is available",
        )
        await steps.wait_until(
            Phase.MODEL_SERVICE, "route-accepted", calls.WAIT_FOR_ROUTE,
            spec.model_service.full_name, timeout, "wait until the HTTPRoute is accepted",
        )

        if plan.first_install:
            if not early:
                await self._create_roles(plan, surge, timeout)
            for step in plan.steps:
                await steps.wait_for_role(Phase.MODEL_LOAD, step, spec)
                self._progress.reached(step.name)
            # Analysed once every role serves: the gateway needs both for a request.
            for step in plan.steps:
                if step.analysis is not None:
                    await self._analysis.gate(step)
            return

        for index, role in enumerate(plan.roles):
            if index > 0 and plan.between_roles is not None:
                await self._control.pass_gate("between-roles", plan.between_roles)
            for step in plan.steps_of(role):
                await self._control.checkpoint()
                await steps.apply_model_service(
                    role, step.name, step.partition, surge.get(role), timeout
                )
                await steps.wait_for_role(Phase.MODEL_LOAD, step, spec)
                if step.verify_after:
                    await steps.verify(f"verify/{step.name}", spec)
                if step.analysis is not None:
                    await self._analysis.gate(step)
                self._progress.reached(step.name)
                if step.gate is not None:
                    await self._control.pass_gate(step.gate_name, step.gate)

    async def _create_roles(
        self, plan: RolloutPlan, surge: dict[str, int], timeout: timedelta
    ) -> None:
        """A first install's roles, every one at once (largest pods first), each waited for
        afterwards. The partition is always explicit (0 here), so re-running the same spec
        applies the same object."""
        for step in plan.steps:
            await self._steps.apply_model_service(
                step.role, step.name, 0, surge.get(step.role), timeout
            )

    async def _verify(self) -> None:
        await self._steps.verify("verify", self._spec)

    async def _record(self) -> None:
        spec = self._spec
        timeout = spec.budgets.phase_timeouts.verify
        revision = self._revision or ""
        await self._steps.call(
            Phase.RECORD, "snapshot", calls.SNAPSHOT_OBJECTS,
            # The spec goes with the snapshot: a later rollback to this revision waits for and
            # verifies it under its own names (LWS names, model name), not the failed spec's.
            SnapshotInput(
                target=spec.target, rollout=spec.metadata.name, revision=revision, spec=spec
            ),
            budget=timeout, summary=f"snapshot revision {revision}",
            status=lambda r: (
                StepStatus.UNCHANGED if r.action in ("unchanged", "found") else StepStatus.CHANGED
            ),
            detail=lambda r: f"ConfigMap {r.config_map}, {len(r.objects)} objects",
        )
        await self._steps.call(
            Phase.RECORD, "last-known-good", calls.MARK_LAST_KNOWN_GOOD,
            MarkLastKnownGoodInput(
                target=spec.target, rollout=spec.metadata.name, revision=revision
            ),
            budget=timeout, summary=f"record revision {revision} as last known good",
            status=lambda r: (
                StepStatus.UNCHANGED if r.action in ("unchanged", "found") else StepStatus.CHANGED
            ),
            detail=lambda r: f"last known good: {r.revision}",
        )

    # --- control (the SDK finds handlers on the class; workflows/control.py does the work) --

    @workflow.update
    def approve(self, request: ApproveRequest) -> ControlResult:
        return self._control.approve(request)

    @approve.validator
    def _validate_approve(self, request: ApproveRequest) -> None:
        self._control.validate_approve(request)

    @workflow.update
    def pause(self, request: PauseRequest) -> ControlResult:
        return self._control.pause(request)

    @pause.validator
    def _validate_pause(self, request: PauseRequest) -> None:
        self._control.validate_pause(request)

    @workflow.update
    def resume(self, request: ResumeRequest) -> ControlResult:
        return self._control.resume(request)

    @resume.validator
    def _validate_resume(self, request: ResumeRequest) -> None:
        self._control.validate_resume(request)

    @workflow.update
    def abort(self, request: AbortRequest) -> ControlResult:
        return self._control.abort(request)

    @abort.validator
    def _validate_abort(self, request: AbortRequest) -> None:
        self._control.validate_abort(request)

    @workflow.query
    def progress(self) -> Progress:
        return self._progress.query()


def _previous_spec(previous: LastKnownGood, desired: RolloutSpec) -> RolloutSpec | None:
    """The spec of the last-known-good revision, as stored with its snapshot, on the desired
    spec's target: the same cluster, namespace and rollout (the record was read there), reached
    the way this worker reaches it now (a kubeconfig path recorded by an earlier worker may be
    gone). None for records taken without a spec: the plan then treats every role as changed and
    the rollback waits for the restored version under the desired spec's names."""
    if previous.revision is None or previous.spec is None:
        return None
    return previous.spec.model_copy(update={"target": desired.target})
