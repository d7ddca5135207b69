"""TeardownWorkflow: remove a target's stack in the reverse order of a rollout.

Where it sits: started by the CLI through rollouts.starting under the target's workflow ID, the
same ID as its rollouts, so a teardown and a rollout of one target never run at the same time.
Order: model-service objects, the infra release, the HF token Secret (when we created it), the
last-known-good record, the namespace; then, only when asked, the gateway provider releases and
the dependencies (LWS controller, inference-extension and Gateway API CRDs), which are
cluster-wide and may serve other tenants. Every step is idempotent: what is already gone is
reported `unchanged`, so a teardown can be run again after a partial one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import (
        DeleteObjectsInput,
        DeleteResult,
        HelmResult,
        HelmUninstallInput,
        ObjectRef,
        SnapshotLookupInput,
    )
    from spec.crds import (
        CRD_API_VERSION,
        CRD_KIND,
        GATEWAY_API_CRDS,
        INFERENCE_EXTENSION_CRDS,
        LWS_CRDS,
    )
    from spec.records import last_known_good_name
    from spec.rollout import HelmRelease, RolloutSpec
    from spec.workflow_io import (
        Outcome,
        Phase,
        Progress,
        RunState,
        StepStatus,
        TeardownInput,
        TeardownResult,
    )
    from workflows import calls, search
    from workflows.cluster_calls import CLUSTER_WORKFLOW_PATCH, free_capacity, release_shared
    from workflows.journal import Journal
    from workflows.shared_pieces import dependency_pieces, provider_pieces

# One teardown step: whether it changed anything, and a line for the history.
Step = Callable[[], Awaitable[tuple[bool, str]]]


@workflow.defn(name="TeardownWorkflow")
class TeardownWorkflow:
    @workflow.init
    def __init__(self, request: TeardownInput) -> None:
        self._spec = request.spec
        self._journal = Journal()
        self._step = "starting"
        self._state = RunState.RUNNING
        self._outcome = Outcome.RUNNING
        self._done = 0
        self._total = 1

    @workflow.run
    async def run(self, request: TeardownInput) -> TeardownResult:
        started = workflow.now()
        spec = request.spec
        search.announce(
            spec.target_id, spec.model_service.model_name, spec.model_service.vllm_image,
            Phase.TEARDOWN.value,
        )
        kept: list[str] = []
        plan = self._plan(request, kept)
        self._total = len(plan)
        try:
            for name, step in plan:
                await self._run_step(name, step)
        except (asyncio.CancelledError, Exception):
            self._outcome = Outcome.FAILED
            self._state = RunState.FINISHED
            search.update(outcome=self._outcome.value)
            self._publish()
            raise
        self._outcome = Outcome.REMOVED
        self._state = RunState.FINISHED
        search.update(phase=Phase.DONE.value, outcome=self._outcome.value)
        self._publish()
        finished = workflow.now()
        return TeardownResult(
            workflow_id=workflow.info().workflow_id,
            target=spec.target_id,
            outcome=self._outcome,
            steps=self._journal.records(),
            kept=kept,
            duration_seconds=(finished - started).total_seconds(),
        )

    def _plan(self, request: TeardownInput, kept: list[str]) -> list[tuple[str, Step]]:
        spec = request.spec
        steps: list[tuple[str, Step]] = [
            ("model-service", lambda: _delete_owned(spec)),
            (f"helm/{spec.infra.release_name}", lambda: _uninstall(spec, spec.infra)),
        ]
        namespace = spec.target.namespace
        token = spec.model_service.hf_token
        if request.keep_namespace:
            if not token.existing_secret:
                secret = [_ref("v1", "Secret", token.secret_name, namespace)]
                steps.append(("hf-token-secret", lambda: _delete_refs(spec, secret)))
            steps.append(("last-known-good", lambda: _forget_last_known_good(spec)))
            kept.append(f"namespace {namespace} (--keep-namespace)")
        else:
            namespace_ref = [_ref("v1", "Namespace", namespace, None)]
            steps.append(("namespace", lambda: _delete_refs(spec, namespace_ref)))
        if workflow.patched(CLUSTER_WORKFLOW_PATCH):
            # The cluster workflow owns the shared pieces: it forgets this target as their user
            # and removes, when asked, only what no other target uses.
            steps.append(("shared-pieces", lambda: _release_shared(request, kept)))
            return steps
        provider = spec.gateway_provider
        if request.include_gateway_provider:
            for release in reversed(provider.releases):
                steps.append((f"helm/{release.release_name}", _uninstaller(spec, release)))
        elif provider.releases:
            names = ", ".join(r.release_name for r in provider.releases)
            kept.append(f"gateway provider releases {names} (shared; --include-gateway-provider)")
        deps = spec.dependencies
        if request.include_dependencies:
            if deps.leader_worker_set.release is not None:
                lws = deps.leader_worker_set.release
                steps.append((f"helm/{lws.release_name}", _uninstaller(spec, lws)))
            crds = INFERENCE_EXTENSION_CRDS + GATEWAY_API_CRDS + LWS_CRDS
            refs = [_ref(CRD_API_VERSION, CRD_KIND, name, None) for name in crds]
            steps.append(("crds", lambda: _delete_refs(spec, refs)))
        else:
            kept.append(
                "LWS controller and the Gateway API and inference-extension CRDs "
                "(cluster-wide; --include-dependencies)"
            )
        return steps

    async def _run_step(self, name: str, step: Step) -> None:
        self._step = name
        # A cancelled teardown step reads `failed`: the teardown did not finish.
        with self._journal.step(
            Phase.TEARDOWN, name, workflow.now, cancelled=StepStatus.FAILED
        ) as outcome:
            self._publish()
            changed, outcome.detail = await step()
            outcome.status = StepStatus.CHANGED if changed else StepStatus.UNCHANGED
        self._done += 1

    @workflow.query
    def progress(self) -> Progress:
        return Progress(
            workflow_id=workflow.info().workflow_id,
            target=self._spec.target_id,
            phase=Phase.TEARDOWN if self._state != RunState.FINISHED else Phase.DONE,
            step=self._step,
            state=self._state,
            percent=100 if self._state == RunState.FINISHED else self._percent(),
            roles=[],
            outcome=self._outcome,
            history=self._journal.records(),
        )

    def _percent(self) -> int:
        return min(99, round(100 * self._done / max(1, self._total)))

    def _publish(self) -> None:
        workflow.set_current_details(
            f"**teardown of {self._spec.target_id}** · step `{self._step}` · "
            f"state **{self._state.value}** · {self._percent()}%"
        )


def _ref(api_version: str, kind: str, name: str, namespace: str | None) -> ObjectRef:
    return ObjectRef(api_version=api_version, kind=kind, name=name, namespace=namespace)


def _uninstaller(spec: RolloutSpec, release: HelmRelease) -> Step:
    return lambda: _uninstall(spec, release)


def _budget(spec: RolloutSpec) -> timedelta:
    return spec.budgets.phase_timeouts.infra


async def _delete_owned(spec: RolloutSpec) -> tuple[bool, str]:
    result = await calls.execute(
        calls.DELETE_OBJECTS,
        DeleteObjectsInput(target=spec.target, rollout=spec.metadata.name, timeout=_budget(spec)),
        budget=_budget(spec), summary="delete the model-service objects",
    )
    return _deleted(result)


async def _delete_refs(spec: RolloutSpec, refs: list[ObjectRef]) -> tuple[bool, str]:
    result = await calls.execute(
        calls.DELETE_OBJECTS,
        DeleteObjectsInput(target=spec.target, refs=refs, timeout=_budget(spec)),
        budget=_budget(spec), summary="delete " + ", ".join(str(r) for r in refs),
    )
    return _deleted(result)


async def _forget_last_known_good(spec: RolloutSpec) -> tuple[bool, str]:
    """Without its record, a later rollout of this target is a first install again, rather than
    an upgrade whose rollback would bring back the stack we removed."""
    namespace = spec.target.namespace
    found = await calls.execute(
        calls.READ_LAST_KNOWN_GOOD,
        SnapshotLookupInput(target=spec.target, rollout=spec.metadata.name),
        budget=_budget(spec), summary="read the last-known-good record",
    )
    refs = [_ref("v1", "ConfigMap", last_known_good_name(spec.metadata.name), namespace)]
    if found.snapshot is not None:
        refs.append(_ref("v1", "ConfigMap", found.snapshot.config_map, namespace))
    return await _delete_refs(spec, refs)


async def _uninstall(spec: RolloutSpec, release: HelmRelease) -> tuple[bool, str]:
    result: HelmResult = await calls.execute(
        calls.HELM_UNINSTALL,
        HelmUninstallInput(
            target=spec.target,
            release_name=release.release_name,
            namespace=release.namespace or spec.target.namespace,
            timeout=_budget(spec),
        ),
        budget=_budget(spec), summary=f"helm uninstall {release.release_name}",
    )
    return result.action == "uninstalled", f"{release.release_name}: {result.action}"


async def _release_shared(request: TeardownInput, kept: list[str]) -> tuple[bool, str]:
    spec = request.spec
    pieces = dependency_pieces(spec) + provider_pieces(spec)
    await free_capacity(spec, "teardown", any_run=True)
    if not pieces:
        return False, "the spec uses no shared pieces"
    answer = await release_shared(
        spec, pieces, include_gateway_provider=request.include_gateway_provider,
        include_dependencies=request.include_dependencies, timeout=_budget(spec),
    )
    kept += [piece.detail for piece in answer.pieces if piece.action == "kept"]
    removed = [piece.detail for piece in answer.pieces if piece.action == "removed"]
    return bool(removed), "; ".join(removed) or "nothing removed"


def _deleted(result: DeleteResult) -> tuple[bool, str]:
    deleted = [str(o.ref) for o in result.outcomes if o.action == "deleted"]
    if not deleted:
        return False, "nothing left to delete"
    return True, f"{len(deleted)} deleted: " + ", ".join(deleted[:10])
