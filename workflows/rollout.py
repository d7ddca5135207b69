"""RolloutWorkflow: converge one target to a spec, or return it to the version that served before.

Where it sits: started by the CLI (workflows.starting) or by a scheduled UpgradeWorkflow under the
target's workflow ID; it runs the nine phases of DESIGN.md through the activities named in
workflows.calls, and on failure or abort runs the saga compensations in reverse, then waits for
and verifies the restored version. An upgrade is the same workflow with a changed spec: phases
with nothing to change report `unchanged` (helm and server-side apply detect it) and cost seconds.

Control: updates `approve`, `pause`, `resume`, `abort` (validated: a request that does not apply
is rejected with a sentence saying why) and the `progress` query. The Temporal UI shows the phase,
step, state and last diagnosis through `workflow.set_current_details`, and each activity has a
summary. Per-pod progress lives in the running activity's heartbeat details, which the workflow
cannot read; the client overlays them on the query result (workflows.observing), which keeps the
history free of polling (a long model load is one activity, whatever its length).

Failure result: the workflow fails with an ApplicationError whose type is the FailureReason and
whose single detail is the RolloutResult (what failed, with evidence, and what was restored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from manifests.labels import epp_name
    from spec.activity_io import (
        ApplyCrdsInput,
        ApplyModelServiceInput,
        ApplyModelServiceResult,
        DeleteObjectsInput,
        EnsureNamespaceInput,
        HelmReleaseInput,
        HelmReleaseState,
        HelmResult,
        HelmRollbackInput,
        HelmStatusInput,
        HelmUninstallInput,
        HfTokenSecretInput,
        LastKnownGood,
        MarkLastKnownGoodInput,
        ModelLoadInput,
        ModelLoadResult,
        ModelServicePart,
        PreflightInput,
        PreflightReport,
        RestoreInput,
        SnapshotInput,
        SnapshotLookupInput,
        VerificationResult,
        VerifyInput,
        WaitForLwsInput,
        WaitForObjectInput,
    )
    from spec.cluster_io import SharedPiece
    from spec.reasons import FailureReason
    from spec.rollout import CrdBundle, Gate, HelmRelease, RoleName, RolloutSpec
    from spec.workflow_io import (
        AbortRequest,
        ApproveRequest,
        CompensationRecord,
        ControlResult,
        FailureReport,
        GateStatus,
        Outcome,
        PauseRequest,
        Phase,
        Progress,
        ResumeRequest,
        RoleProgress,
        RollbackReport,
        RolloutInput,
        RolloutResult,
        RunState,
        StepStatus,
    )
    from workflows import calls, search
    from workflows.calls import ActivityRef
    from workflows.cluster_calls import (
        CLUSTER_WORKFLOW_PATCH,
        ensure_shared,
        free_capacity,
        hold_detail,
        hold_input,
    )
    from workflows.failures import StepFailed, describe_failure
    from workflows.journal import Journal
    from workflows.plan import RoleStep, RolloutPlan, plan_rollout
    from workflows.saga import Compensation, Saga
    from workflows.shared_pieces import dependency_pieces, provider_pieces

In = TypeVar("In")
Out = TypeVar("Out")
CrdBundleName = Literal["gateway-api", "inference-extension"]

GATEWAY_API_CRDS = [
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
]
INFERENCE_EXTENSION_CRDS = [
    "inferencepools.inference.networking.x-k8s.io",
    "inferencemodels.inference.networking.x-k8s.io",
]
# The activity enforces the model-load budget itself (counted from its first attempt, with the
# last progress as evidence); Temporal's timeout is the backstop a little later.
MODEL_LOAD_GRACE = timedelta(minutes=1)
# Compensations get more patience than steps: giving up on an undo leaves a half-done target.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=15),
)
COMPENSATION_BUDGET_FACTOR = 3
# Milestones outside the model-service steps: preflight, dependencies, gateway provider,
# namespace, infra, verify, record.
FIXED_MILESTONES = 7
# Exceptions that mean the workflow code itself cannot go on (replay mismatch, a query mutating
# state): rolling back from there would issue commands from a broken state.
_NOT_ROLLOUT_FAILURES = (workflow.NondeterminismError, workflow.ReadOnlyContextError)


@workflow.defn(name="RolloutWorkflow")
class RolloutWorkflow:
    @workflow.init
    def __init__(self, request: RolloutInput) -> None:
        self._spec = request.spec
        self._journal = Journal()
        self._saga = Saga()
        self._phase = Phase.PREFLIGHT
        self._step = "starting"
        self._state = RunState.RUNNING
        self._outcome = Outcome.RUNNING
        self._diagnosis: str | None = None
        self._gate: GateStatus | None = None
        self._approved: set[str] = set()
        self._approval_note = ""
        self._pause_requested = False
        self._abort: AbortRequest | None = None
        self._body: asyncio.Task[None] | None = None
        self._previous: LastKnownGood | None = None
        self._previous_spec: RolloutSpec | None = None
        self._revision: str | None = None
        self._holding = False
        self._planned_steps = len(request.spec.strategy.role_order)
        self._milestones = 0
        self._roles: dict[RoleName, RoleProgress] = {
            role: RoleProgress(
                role=role,
                image=request.spec.model_service.image_for(role),
                groups=request.spec.model_service.role(role).replicas,
                pods=request.spec.model_service.role(role).pods,
            )
            for role in request.spec.strategy.role_order
        }

    # --- the run --------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        started = workflow.now()
        spec = self._spec
        workflow.upsert_search_attributes(
            [
                search.TARGET.value_set(spec.target_id),
                search.MODEL.value_set(spec.model_service.model_name),
                search.IMAGE.value_set(spec.model_service.vllm_image),
                search.PHASE.value_set(self._phase.value),
                search.OUTCOME.value_set(Outcome.RUNNING.value),
            ]
        )
        self._publish()
        failure: FailureReport | None = None
        rollback: RollbackReport | None = None
        self._body = asyncio.create_task(self._converge())
        if self._abort is not None:
            self._body.cancel()
        try:
            await self._body
        # Cancellation (abort, or a cancel request) and every error roll back. Not BaseException:
        # the SDK tears down evicted runs with exceptions of its own that must pass through.
        except (asyncio.CancelledError, Exception) as error:
            if isinstance(error, _NOT_ROLLOUT_FAILURES):
                raise
            failure = describe_failure(error, self._phase, self._step, self._abort_reason())
            self._diagnosis = f"{failure.reason.value}: {failure.message}"
            rollback = await self._recover(failure)
        else:
            self._outcome = Outcome.SUCCEEDED
            self._milestones = self._total_milestones()
        if self._holding:
            await free_capacity(spec, self._outcome.value)
        result = self._result(started, failure, rollback)
        self._state = RunState.FINISHED
        self._enter(Phase.DONE, "finished")
        workflow.upsert_search_attributes([search.OUTCOME.value_set(self._outcome.value)])
        self._publish()
        if failure is None:
            return result
        raise ApplicationError(
            f"{failure.reason.value} at {failure.step}: {failure.message} "
            f"(outcome: {self._outcome.value})",
            result,
            type=failure.reason.value,
            non_retryable=True,
        )

    async def _converge(self) -> None:
        spec = self._spec
        timeouts = spec.budgets.phase_timeouts
        target = spec.target

        previous = await self._call(
            Phase.PREFLIGHT, "last-known-good", calls.READ_LAST_KNOWN_GOOD,
            SnapshotLookupInput(target=target, rollout=spec.metadata.name),
            budget=timeouts.preflight, summary="read the last-known-good record",
            status=lambda r: StepStatus.PASSED,
            detail=lambda r: f"revision {r.revision}" if r.revision else "nothing recorded",
        )
        self._previous = previous
        self._previous_spec = _previous_spec(previous, spec)
        plan = plan_rollout(spec, previous.revision, self._previous_spec)
        self._planned_steps = len(plan.steps)
        report = await self._call(
            Phase.PREFLIGHT, "preflight", calls.PREFLIGHT,
            PreflightInput(spec=spec, roles=list(plan.changed_roles)),
            budget=timeouts.preflight, summary="check the cluster and plan capacity",
            status=lambda r: StepStatus.PASSED if r.capacity.fits else StepStatus.FAILED,
            detail=lambda r: (
                f"{r.capacity.gpus_asked} GPUs asked, {r.capacity.gpus_available} available"
            ),
        )
        if not report.capacity.fits:
            raise StepFailed(
                FailureReason.INSUFFICIENT_CAPACITY,
                f"the cluster cannot hold the rollout: {report.capacity.gpus_asked} GPUs asked, "
                f"{report.capacity.gpus_available} available",
                {"plan": report.capacity.render()},
            )
        if workflow.patched(CLUSTER_WORKFLOW_PATCH):
            # Held through the cluster workflow, so concurrent rollouts never count one GPU twice.
            self._holding = True
            held = await self._call(
                Phase.PREFLIGHT, "hold-capacity", calls.HOLD_CAPACITY,
                hold_input(spec, list(plan.changed_roles), len(plan.steps)),
                budget=timeouts.preflight, summary="hold the capacity plan for this rollout",
                status=lambda r: StepStatus.PASSED, detail=hold_detail,
            )
            report = report.model_copy(update={"capacity": held})
        self._milestones += 1

        await self._dependencies()
        await self._gateway_provider()
        await self._namespace()
        await self._infra()
        await self._model_service(plan, report)
        await self._checkpoint()
        await self._verify("verify", spec)
        self._milestones += 1
        await self._record()

    # --- phases ---------------------------------------------------------------------------

    async def _dependencies(self) -> None:
        await self._checkpoint()
        spec = self._spec
        deps = spec.dependencies
        timeout = spec.budgets.phase_timeouts.dependencies
        if workflow.patched(CLUSTER_WORKFLOW_PATCH):
            # The cluster workflow is the one writer of cluster-wide pieces (workflows/cluster.py).
            pieces = dependency_pieces(spec, GATEWAY_API_CRDS, INFERENCE_EXTENSION_CRDS)
            if pieces:
                await self._ensure_shared(Phase.DEPENDENCIES, pieces, timeout)
            if deps.leader_worker_set.release is None:
                self._journal.add(
                    Phase.DEPENDENCIES, "lws-controller", StepStatus.SKIPPED, workflow.now(),
                    "already installed (spec)",
                )
            self._milestones += 1
            return
        bundles: tuple[tuple[CrdBundleName, CrdBundle, list[str]], ...] = (
            ("gateway-api", deps.gateway_api_crds, GATEWAY_API_CRDS),
            ("inference-extension", deps.inference_extension_crds, INFERENCE_EXTENSION_CRDS),
        )
        for name, bundle, expected in bundles:
            verb = "check" if bundle.already_installed else "install"
            await self._call(
                Phase.DEPENDENCIES, f"crds/{name}", calls.APPLY_CRDS,
                ApplyCrdsInput(
                    target=spec.target, bundle=bundle, bundle_name=name, expected=expected,
                    timeout=timeout,
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
            self._journal.add(
                Phase.DEPENDENCIES, "lws-controller", StepStatus.SKIPPED, workflow.now(),
                "already installed (spec)",
            )
        else:
            await self._helm_release(
                Phase.DEPENDENCIES, "lws-controller", lws.release, shared=True, timeout=timeout
            )
        self._milestones += 1

    async def _gateway_provider(self) -> None:
        await self._checkpoint()
        provider = self._spec.gateway_provider
        timeout = self._spec.budgets.phase_timeouts.gateway_provider
        if not provider.releases:
            self._journal.add(
                Phase.GATEWAY_PROVIDER, "gateway-provider", StepStatus.SKIPPED, workflow.now(),
                f"provider type {provider.type}: nothing to install",
            )
        elif workflow.patched(CLUSTER_WORKFLOW_PATCH):
            await self._ensure_shared(Phase.GATEWAY_PROVIDER, provider_pieces(self._spec), timeout)
            self._milestones += 1
            return
        for release in provider.releases:
            await self._helm_release(
                Phase.GATEWAY_PROVIDER, f"gateway-provider/{release.release_name}", release,
                shared=True, timeout=timeout,
            )
        self._milestones += 1

    async def _namespace(self) -> None:
        await self._checkpoint()
        spec = self._spec
        timeout = spec.budgets.phase_timeouts.namespace
        await self._call(
            Phase.NAMESPACE, "namespace", calls.ENSURE_NAMESPACE,
            EnsureNamespaceInput(target=spec.target),
            budget=timeout, summary=f"ensure namespace {spec.target.namespace}",
            status=lambda r: StepStatus.CHANGED if r.changed else StepStatus.UNCHANGED,
        )
        token = spec.model_service.hf_token
        await self._call(
            Phase.NAMESPACE, "hf-token-secret", calls.ENSURE_HF_TOKEN_SECRET,
            HfTokenSecretInput(target=spec.target, hf_token=token),
            budget=timeout, summary=f"ensure Secret {token.secret_name} (key {token.secret_key})",
            status=lambda r: (
                StepStatus.CHANGED if r.action in ("created", "configured")
                else StepStatus.UNCHANGED
            ),
            detail=lambda r: f"Secret {r.name} {r.action}",
        )
        self._milestones += 1

    async def _infra(self) -> None:
        await self._checkpoint()
        spec = self._spec
        timeout = spec.budgets.phase_timeouts.infra
        await self._helm_release(Phase.INFRA, "infra", spec.infra, shared=False, timeout=timeout)
        await self._call(
            Phase.INFRA, "gateway-programmed", calls.WAIT_FOR_GATEWAY,
            WaitForObjectInput(target=spec.target, name=spec.infra.gateway, timeout=timeout),
            budget=timeout, summary=f"wait until Gateway {spec.infra.gateway} is Programmed",
            status=lambda r: StepStatus.PASSED, detail=lambda r: r.detail,
        )
        self._milestones += 1

    async def _model_service(self, plan: RolloutPlan, report: PreflightReport) -> None:
        await self._checkpoint()
        spec = self._spec
        timeout = spec.budgets.phase_timeouts.model_service
        shared = await self._apply_model_service("shared", "shared", None, None, timeout)
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
        await self._call(
            Phase.MODEL_SERVICE, "epp-available", calls.WAIT_FOR_DEPLOYMENT,
            WaitForObjectInput(target=spec.target, name=epp_name(spec), timeout=timeout),
            budget=timeout, summary="wait until the endpoint picker is available",
            status=lambda r: StepStatus.PASSED, detail=lambda r: r.detail,
        )
        await self._call(
            Phase.MODEL_SERVICE, "route-accepted", calls.WAIT_FOR_ROUTE,
            WaitForObjectInput(
                target=spec.target, name=spec.model_service.full_name, timeout=timeout
            ),
            budget=timeout, summary="wait until the HTTPRoute is accepted",
            status=lambda r: StepStatus.PASSED, detail=lambda r: r.detail,
        )

        surge = report.capacity.max_surge
        if plan.first_install:
            # Nothing serves yet: create every role at once, then wait for each. The partition
            # is always explicit (0 here), so re-running the same spec applies the same object.
            for step in plan.steps:
                await self._apply_model_service(
                    step.role, step.name, 0, surge.get(step.role), timeout
                )
            for step in plan.steps:
                await self._wait_for_role(Phase.MODEL_LOAD, step, spec)
                self._milestones += 1
            return

        for index, role in enumerate(plan.roles):
            if index > 0 and plan.between_roles is not None:
                await self._pass_gate("between-roles", plan.between_roles)
            for step in plan.steps_of(role):
                await self._checkpoint()
                await self._apply_model_service(
                    role, step.name, step.partition, surge.get(role), timeout
                )
                await self._wait_for_role(Phase.MODEL_LOAD, step, spec)
                if step.verify_after:
                    await self._verify(f"verify/{step.name}", spec)
                self._milestones += 1
                if step.gate is not None:
                    await self._pass_gate(step.gate_name, step.gate)

    async def _record(self) -> None:
        await self._checkpoint()
        spec = self._spec
        timeout = spec.budgets.phase_timeouts.verify
        revision = self._revision or ""
        await self._call(
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
        await self._call(
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
        self._milestones += 1

    # --- steps ----------------------------------------------------------------------------

    async def _ensure_shared(
        self, phase: Phase, pieces: list[SharedPiece], timeout: timedelta
    ) -> None:
        await ensure_shared(
            self._spec, phase, pieces, timeout, self._journal, self._saga, self._enter,
            self._publish,
        )

    async def _helm_release(
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
        result = await self._call(
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
        compensation = _helm_compensation(step, release, namespace, before, result, shared)
        if compensation is not None:
            self._saga.register(compensation)

    async def _apply_model_service(
        self,
        part: ModelServicePart,
        name: str,
        partition: int | None,
        max_surge: int | None,
        timeout: timedelta,
    ) -> ApplyModelServiceResult:
        where = f" at partition {partition}" if partition is not None else ""
        result = await self._call(
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
            role = self._roles[part]
            self._roles[part] = role.model_copy(update={"partition": partition or 0})
        return result

    async def _wait_for_role(self, phase: Phase, step: RoleStep, spec: RolloutSpec) -> None:
        """The role's LWS rollout and vLLM on every new pod, side by side; the first failure
        (each wait diagnoses pod trouble as it appears) cancels the other."""
        role = step.role
        partition = step.partition or 0
        budget = spec.budgets.model_load
        name = f"model-load/{step.name}" if phase == Phase.MODEL_LOAD else f"wait/{role}"
        self._enter(phase, name)
        entry = self._journal.start(phase, name, workflow.now())
        self._publish()
        try:
            _, loaded = await calls.both(
                calls.execute(
                    calls.WAIT_FOR_LWS,
                    WaitForLwsInput(
                        target=spec.target, name=spec.model_service.lws_name(role),
                        partition=partition, timeout=budget,
                    ),
                    budget=budget + MODEL_LOAD_GRACE,
                    summary=f"wait for the {role} LeaderWorkerSet rollout (partition {partition})",
                ),
                calls.execute(
                    calls.WAIT_FOR_MODEL_LOAD,
                    ModelLoadInput(spec=spec, role=role, partition=partition),
                    budget=budget + MODEL_LOAD_GRACE,
                    summary=f"wait for vLLM to serve on the {role} pods (partition {partition})",
                ),
            )
        except (asyncio.CancelledError, Exception) as error:
            self._journal.finish(entry, _failed_status(error), workflow.now())
            raise
        self._note_loaded(role, partition, loaded)
        self._journal.finish(
            entry, StepStatus.PASSED, workflow.now(),
            f"{len(loaded.pods)} pods serving in {loaded.elapsed_seconds:.1f}s",
        )

    async def _verify(self, name: str, spec: RolloutSpec, phase: Phase = Phase.VERIFY) -> None:
        result = await self._call(
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

    async def _pass_gate(self, name: str, gate: Gate) -> None:
        """A timed pause and/or an approval; only an abort (or cancellation) gets past early."""
        now = workflow.now()
        self._enter(Phase.GATE, name)
        entry = self._journal.start(Phase.GATE, name, now, StepStatus.WAITING)
        self._gate = GateStatus(
            name=name,
            approval=gate.approval,
            since=now,
            pause_until=now + gate.pause if gate.pause is not None else None,
        )
        try:
            if gate.pause is not None:
                self._state = RunState.TIMED_PAUSE
                self._publish()
                await workflow.sleep(gate.pause)
            if gate.approval:
                self._state = RunState.WAITING_FOR_APPROVAL
                self._publish()
                await workflow.wait_condition(lambda: name in self._approved)
        except (asyncio.CancelledError, Exception) as error:
            self._journal.finish(entry, _failed_status(error), workflow.now())
            raise
        finally:
            self._gate = None
            self._state = RunState.RUNNING
        detail = self._approval_note if gate.approval else "pause elapsed"
        self._journal.finish(entry, StepStatus.PASSED, workflow.now(), detail)
        self._publish()

    async def _checkpoint(self) -> None:
        """Where a requested pause takes hold: between steps, never inside one."""
        if not self._pause_requested:
            return
        self._enter(Phase.GATE, "paused")
        entry = self._journal.start(Phase.GATE, "paused", workflow.now(), StepStatus.WAITING)
        self._state = RunState.PAUSED
        self._publish()
        try:
            await workflow.wait_condition(lambda: not self._pause_requested)
        except (asyncio.CancelledError, Exception) as error:
            self._journal.finish(entry, _failed_status(error), workflow.now())
            raise
        finally:
            self._state = RunState.RUNNING
        self._journal.finish(entry, StepStatus.PASSED, workflow.now(), "resumed")
        self._publish()

    async def _call(
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
        self._enter(phase, name)
        entry = self._journal.start(phase, name, workflow.now())
        self._publish()
        try:
            result = await calls.execute(ref, arg, budget=budget, summary=summary)
        except (asyncio.CancelledError, Exception) as error:
            self._journal.finish(entry, _failed_status(error), workflow.now())
            raise
        self._journal.finish(
            entry, status(result), workflow.now(), detail(result) if detail else None
        )
        return result

    # --- rollback -------------------------------------------------------------------------

    async def _recover(self, failure: FailureReport) -> RollbackReport | None:
        """Apply the spec's rollback policy: undo newest first, then wait for and verify the
        version that served before."""
        policy = self._spec.rollback
        first_install = self._previous is None or self._previous.revision is None
        now = workflow.now()
        if not self._saga:
            self._outcome = Outcome.FAILED
            self._journal.add(
                Phase.ROLLBACK, "rollback", StepStatus.SKIPPED, now, "nothing had changed"
            )
            return None
        if not policy.automatic:
            self._outcome = Outcome.FAILED
            self._journal.add(
                Phase.ROLLBACK, "rollback", StepStatus.SKIPPED, now,
                "automatic rollback is off (spec.rollback.automatic)",
            )
            return None
        if first_install and policy.on_first_install_failure == "keep":
            self._outcome = Outcome.KEPT_FOR_INSPECTION
            self._journal.add(
                Phase.ROLLBACK, "rollback", StepStatus.SKIPPED, now,
                "first install kept for inspection (spec.rollback.onFirstInstallFailure: keep)",
            )
            return None

        self._state = RunState.ROLLING_BACK
        self._diagnosis = f"rolling back: {failure.reason.value}: {failure.message}"
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

        restored = None if first_install else self._previous.revision if self._previous else None
        verified = False
        if rollback_failure is None and not first_install:
            old_spec = self._previous_spec or self._spec
            try:
                for role in old_spec.strategy.role_order:
                    step = RoleStep(role, 0, True, None, "", verify_after=False)
                    await self._wait_for_role(Phase.ROLLBACK, step, old_spec)
                await self._verify("verify-restored", old_spec, Phase.ROLLBACK)
                verified = True
            except Exception as error:
                rollback_failure = describe_failure(error, Phase.ROLLBACK, self._step)
        self._outcome = Outcome.ROLLED_BACK if rollback_failure is None else Outcome.ROLLBACK_FAILED
        if rollback_failure is not None:
            self._diagnosis = (
                f"rollback incomplete: {rollback_failure.reason.value}: {rollback_failure.message}"
            )
        return RollbackReport(
            compensations=records,
            restored_revision=restored,
            verified=verified,
            failure=rollback_failure,
        )

    async def _compensate(self, compensation: Compensation) -> CompensationRecord:
        spec = self._spec
        name = f"undo/{compensation.undoes}"
        budget = spec.budgets.phase_timeouts.model_service * COMPENSATION_BUDGET_FACTOR
        if compensation.kind == "keep":
            self._journal.add(
                Phase.ROLLBACK, name, StepStatus.SKIPPED, workflow.now(), compensation.action
            )
            return CompensationRecord(
                undoes=compensation.undoes, action=compensation.action, status="kept",
                detail=compensation.reason,
            )
        self._enter(Phase.ROLLBACK, name)
        entry = self._journal.start(Phase.ROLLBACK, name, workflow.now())
        self._publish()
        try:
            detail = await self._run_compensation(compensation, budget)
        except (asyncio.CancelledError, Exception) as error:
            self._journal.finish(entry, _failed_status(error), workflow.now())
            raise
        self._journal.finish(entry, StepStatus.CHANGED, workflow.now(), detail)
        return CompensationRecord(
            undoes=compensation.undoes, action=compensation.action, status="succeeded",
            detail=detail,
        )

    async def _run_compensation(self, compensation: Compensation, budget: timedelta) -> str:
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

    # --- control --------------------------------------------------------------------------

    @workflow.update
    def approve(self, request: ApproveRequest) -> ControlResult:
        assert self._gate is not None
        self._approved.add(self._gate.name)
        who = f" by {request.by}" if request.by else ""
        self._approval_note = f"approved{who}" + (f": {request.note}" if request.note else "")
        return self._ack(f"gate {self._gate.name} approved{who}")

    @approve.validator
    def _validate_approve(self, request: ApproveRequest) -> None:
        self._reject_when_finished("approve")
        gate = self._gate
        if gate is None or self._state != RunState.WAITING_FOR_APPROVAL:
            waiting = (
                f"gate {gate.name} is in its timed pause" if gate is not None
                else f"the rollout is at {self._step} ({self._state.value})"
            )
            raise ValueError(f"no gate is waiting for approval: {waiting}")
        if request.gate and request.gate != gate.name:
            raise ValueError(
                f"gate {request.gate!r} is not the one waiting for approval; {gate.name!r} is"
            )

    @workflow.update
    def pause(self, request: PauseRequest) -> ControlResult:
        self._pause_requested = True
        who = f" by {request.by}" if request.by else ""
        return self._ack(f"pause requested{who}: the rollout holds before its next step")

    @pause.validator
    def _validate_pause(self, request: PauseRequest) -> None:
        self._reject_when_finished("pause")
        if self._pause_requested:
            raise ValueError("the rollout is already paused (or pausing); resume it instead")

    @workflow.update
    def resume(self, request: ResumeRequest) -> ControlResult:
        self._pause_requested = False
        who = f" by {request.by}" if request.by else ""
        return self._ack(f"resumed{who}")

    @resume.validator
    def _validate_resume(self, request: ResumeRequest) -> None:
        self._reject_when_finished("resume")
        if not self._pause_requested:
            raise ValueError(f"the rollout is not paused (it is {self._state.value})")

    @workflow.update
    def abort(self, request: AbortRequest) -> ControlResult:
        self._abort = request
        if self._body is not None and not self._body.done():
            self._body.cancel()
        return self._ack("abort accepted: stopping and rolling back")

    @abort.validator
    def _validate_abort(self, request: AbortRequest) -> None:
        self._reject_when_finished("abort")
        if self._abort is not None:
            raise ValueError("the rollout is already being aborted")

    @workflow.query
    def progress(self) -> Progress:
        return Progress(
            workflow_id=workflow.info().workflow_id,
            target=self._spec.target_id,
            phase=self._phase,
            step=self._step,
            state=self._state,
            percent=self._percent(),
            roles=list(self._roles.values()),
            diagnosis=self._diagnosis,
            gate=self._gate,
            pause_requested=self._pause_requested,
            abort_requested=self._abort is not None,
            outcome=self._outcome,
            history=self._journal.records(),
        )

    def _reject_when_finished(self, action: str) -> None:
        if self._state == RunState.ROLLING_BACK:
            raise ValueError(f"cannot {action}: the rollout is rolling back ({self._diagnosis})")
        if self._state == RunState.FINISHED or self._outcome != Outcome.RUNNING:
            raise ValueError(f"cannot {action}: the rollout has finished ({self._outcome.value})")

    def _ack(self, message: str) -> ControlResult:
        self._publish()
        return ControlResult(message=message, state=self._state, step=self._step)

    def _abort_reason(self) -> str | None:
        if self._abort is None:
            cancelled = workflow.cancellation_reason()
            return None if cancelled is None else f"cancelled: {cancelled or 'no reason given'}"
        who = f" by {self._abort.by}" if self._abort.by else ""
        return f"aborted{who}" + (f": {self._abort.reason}" if self._abort.reason else "")

    # --- state shown to people ------------------------------------------------------------

    def _enter(self, phase: Phase, step: str) -> None:
        self._step = step
        if phase != self._phase:
            self._phase = phase
            workflow.upsert_search_attributes([search.PHASE.value_set(phase.value)])

    def _note_loaded(self, role: RoleName, partition: int, loaded: ModelLoadResult) -> None:
        current = self._roles.get(role)
        if current is None:
            return
        self._roles[role] = current.model_copy(
            update={
                "partition": partition,
                "groups_updated": current.groups - partition,
                "pods_ready": len(loaded.pods),
                "pods_loaded": len(loaded.pods),
                "load_percent": 100.0,
            }
        )

    def _total_milestones(self) -> int:
        return FIXED_MILESTONES + self._planned_steps

    def _percent(self) -> int:
        if self._state == RunState.FINISHED:
            return 100
        return min(99, round(100 * self._milestones / self._total_milestones()))

    def _publish(self) -> None:
        """What the Temporal UI shows for this run (no history event: it rides on the task)."""
        lines = [
            f"**{self._spec.target_id}** · phase **{self._phase.value}** · step `{self._step}` · "
            f"{self._percent()}%",
            f"state: **{self._state.value}**"
            + (f" (outcome {self._outcome.value})" if self._outcome != Outcome.RUNNING else ""),
        ]
        if self._gate is not None:
            waiting = "approval" if self._state == RunState.WAITING_FOR_APPROVAL else "pause"
            lines.append(f"gate `{self._gate.name}` waiting for {waiting}")
        if self._pause_requested and self._state != RunState.PAUSED:
            lines.append("pause requested: holds before the next step")
        if self._diagnosis:
            lines.append(f"diagnosis: {self._diagnosis}")
        workflow.set_current_details("\n\n".join(lines))

    def _result(
        self,
        started: datetime,
        failure: FailureReport | None,
        rollback: RollbackReport | None,
    ) -> RolloutResult:
        finished = workflow.now()
        return RolloutResult(
            workflow_id=workflow.info().workflow_id,
            target=self._spec.target_id,
            outcome=self._outcome,
            revision=self._revision,
            previous_revision=self._previous.revision if self._previous else None,
            phases=self._journal.phases(),
            steps=self._journal.records(),
            failure=failure,
            rollback=rollback,
            started_at=started,
            finished_at=finished,
            duration_seconds=(finished - started).total_seconds(),
        )


def _previous_spec(previous: LastKnownGood, desired: RolloutSpec) -> RolloutSpec | None:
    """The spec of the last-known-good revision, as stored with its snapshot, on the desired
    spec's target: the same cluster, namespace and rollout (the record was read there), reached
    the way this worker reaches it now (a kubeconfig path recorded by an earlier worker may be
    gone). None for records taken without a spec: the plan then treats every role as changed and
    the rollback waits for the restored version under the desired spec's names."""
    if previous.revision is None or previous.spec is None:
        return None
    return previous.spec.model_copy(update={"target": desired.target})


def _helm_compensation(
    step: str,
    release: HelmRelease,
    namespace: str,
    before: HelmReleaseState,
    after: HelmResult,
    shared: bool,
) -> Compensation | None:
    """The undo of one helm upgrade, judged by revisions before and after."""
    if after.revision is not None and before.exists and before.revision == after.revision:
        return None
    if after.revision is None and after.action == "unchanged":
        return None
    previous = before.last_deployed_revision if before.exists else None
    if previous is not None:
        return Compensation(
            step, "helm-rollback", release, namespace, revision=previous
        )
    if shared:
        return Compensation(
            step, "keep", release, namespace,
            reason="a shared dependency this rollout installed; teardown removes it when asked",
        )
    return Compensation(step, "helm-uninstall", release, namespace)


def _failed_status(error: BaseException) -> StepStatus:
    return StepStatus.CANCELLED if isinstance(error, asyncio.CancelledError) else StepStatus.FAILED


def _verification_detail(result: VerificationResult) -> str:
    return "; ".join(
        f"{check.name} {'ok' if check.passed else 'FAILED'}: {check.detail}"
        for check in result.checks
    )
