"""How RolloutWorkflow and TeardownWorkflow talk to their cluster's ClusterWorkflow.

Where it sits: workflow-side helpers over the activities of activities/cluster.py (named in
workflows/calls.py). A rollout's dependencies and gateway provider phases ask the cluster
workflow to make the shared pieces current instead of installing them; a teardown tells it the
target no longer uses them. Each piece still shows as its own step in the journal (running while
the ask is out, then changed or unchanged with the cluster workflow's sentence, over the time the
cluster workflow spent on that piece: PieceOutcome.started_at/finished_at).

`CLUSTER_WORKFLOW_PATCH` guards the new path: histories recorded before it replay the old one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import CapacityPlan, PreflightReport
    from spec.cluster_io import (
        EnsureAnswer,
        EnsureAsk,
        FreeAsk,
        HoldCapacityInput,
        ReleaseAnswer,
        ReleaseAsk,
        SharedPiece,
    )
    from spec.rollout import RoleName, RolloutSpec
    from spec.types import format_duration
    from spec.workflow_io import Phase, StepStatus
    from workflows import calls
    from workflows.failures import done_steps, failed_step
    from workflows.journal import Journal, failed_status
    from workflows.plan import RolloutPlan
    from workflows.progress import RolloutProgress
    from workflows.saga import Compensation, Saga
    from workflows.shared_pieces import dependency_pieces, provider_after, provider_pieces
    from workflows.steps import RolloutSteps

CLUSTER_WORKFLOW_PATCH = "cluster-workflow"
# Phases 2 and 3 in one ask (EnsureAsk.after); histories recorded before it replay two asks.
ASKED_TOGETHER_PATCH = "dependencies-and-provider-asked-together"
KEEP_SHARED = (
    "a shared piece the cluster workflow holds for every target; teardown of its last user "
    "removes it when asked"
)


def ask_id(kind: str) -> str:
    """Unique per run and phase, the same on every retry of the activity (the update ID)."""
    info = workflow.info()
    return f"{kind}/{info.workflow_id}/{info.run_id}"


def ask_budget(timeout: timedelta, pieces: list[SharedPiece]) -> timedelta:
    """Each piece gets the phase budget for its own operation; waiting behind another target's
    operation on the same piece takes at most as long again."""
    return timeout * (len(pieces) + 1)


async def ensure_shared(
    spec: RolloutSpec,
    phase: Phase,
    pieces: list[SharedPiece],
    timeout: timedelta,
    journal: Journal,
    saga: Saga,
    enter: Callable[[Phase, str], None],
    publish: Callable[[], None],
    cluster_uid: str = "",
    *,
    at_once: bool = False,
    after: dict[str, list[str]] | None = None,
    phases: Mapping[str, Phase] | None = None,
) -> EnsureAnswer:
    """Ask for `pieces`; each becomes a journal step; a change registers a `keep` undo, since
    the piece belongs to the cluster, not to this rollout. `cluster_uid`: the cluster as
    preflight read it ("": the asking activity reads it); `at_once`: the pieces do not depend
    on one another (EnsureAsk.at_once); `after`: which wait for which (EnsureAsk.after);
    `phases`: the phase of each piece's step, where it is not `phase` (an ask of two phases)."""
    phase_of = {piece.key: (phases or {}).get(piece.key, phase) for piece in pieces}
    enter(phase, pieces[0].step)
    started = workflow.now()
    entries = {
        piece.key: journal.start(phase_of[piece.key], piece.step, started) for piece in pieces
    }
    publish()
    ask = EnsureAsk(
        ask_id=ask_id(f"ensure/{phase.value}"), target_id=spec.target_id, target=spec.target,
        pieces=pieces, timeout=timeout, cluster_uid=cluster_uid, at_once=at_once,
        after=after or {},
    )
    try:
        answer = await calls.execute(
            calls.ENSURE_SHARED_PIECES, ask, budget=ask_budget(timeout, pieces),
            summary="ask the cluster workflow for " + ", ".join(p.step for p in pieces),
        )
    except (asyncio.CancelledError, Exception) as error:
        failed = _finish_failed(journal, pieces, entries, error, after or {})
        if failed is not None:
            # The rollout's failure is reported in the phase of the piece that failed.
            enter(phase_of[failed.key], failed.step)
        raise
    by_key = {piece.key: piece for piece in pieces}
    for outcome in answer.outcomes:
        status = StepStatus.CHANGED if outcome.changed else StepStatus.UNCHANGED
        journal.finish(
            entries[outcome.key], status, workflow.now(), outcome.detail,
            ran=(outcome.started_at, outcome.finished_at),
        )
        piece = by_key[outcome.key]
        if outcome.changed and piece.release is not None:
            saga.register(
                Compensation(
                    outcome.step, "keep", piece.release, piece.namespace, reason=KEEP_SHARED
                )
            )
    return answer


def _finish_failed(
    journal: Journal, pieces: list[SharedPiece], entries: dict[str, int], error: BaseException,
    after: Mapping[str, list[str]],
) -> SharedPiece | None:
    """Journal a failed ask; the piece the failure names, if it names one."""
    at = None if isinstance(error, asyncio.CancelledError) else failed_step(error)
    if at is None:
        for entry in entries.values():
            journal.finish(entry, failed_status(error), workflow.now())
        return None
    failed = next((piece for piece in pieces if piece.step == at), pieces[0])
    done = done_steps(error)
    failed_at = pieces.index(failed)
    done_keys = {piece.key for piece in pieces if done is not None and piece.step in done}
    before = _waited_for(failed.key, after)
    for index, piece in enumerate(pieces):
        status, detail = (
            _in_order_status(index, failed_at, at) if done is None
            else _at_once_status(piece, failed, done_keys, before, after)
        )
        journal.finish(entries[piece.key], status, workflow.now(), detail)
    return failed


def _in_order_status(index: int, failed: int, at: str) -> tuple[StepStatus, str | None]:
    """Of pieces run in order, the ones before the failed one were done and the ones after it
    never ran."""
    if index < failed:
        return StepStatus.PASSED, f"done before {at} failed"
    if index == failed:
        return StepStatus.FAILED, None
    return StepStatus.CANCELLED, f"not run: {at} failed"


def _at_once_status(
    piece: SharedPiece, failed: SharedPiece, done: set[str], before: set[str],
    after: Mapping[str, list[str]],
) -> tuple[StepStatus, str | None]:
    """Of pieces run at once (`done`: the keys the failure says were done; `before`: those the
    failed one waited for, done before it): a piece that waited for one not done never ran; any
    other piece not done failed too."""
    at = failed.step
    if piece.key in before:
        return StepStatus.PASSED, f"done before {at} failed"
    if piece.key in done:
        return StepStatus.PASSED, f"done ({at} failed)"
    if piece.key == failed.key:
        return StepStatus.FAILED, None
    if any(key not in done for key in after.get(piece.key, ())):
        return StepStatus.CANCELLED, f"not run: {at} failed"
    return StepStatus.FAILED, f"failed too ({at} first)"


def _waited_for(key: str, after: Mapping[str, list[str]]) -> set[str]:
    """The pieces `key` waits for, directly or through others: all done if it ran."""
    found: set[str] = set()
    todo = list(after.get(key, ()))
    while todo:
        other = todo.pop()
        if other not in found:
            found.add(other)
            todo.extend(after.get(other, ()))
    return found


async def release_shared(
    spec: RolloutSpec,
    pieces: list[SharedPiece],
    *,
    include_gateway_provider: bool,
    include_dependencies: bool,
    timeout: timedelta,
) -> ReleaseAnswer:
    ask = ReleaseAsk(
        ask_id=ask_id("release"), target_id=spec.target_id, target=spec.target, pieces=pieces,
        include_gateway_provider=include_gateway_provider,
        include_dependencies=include_dependencies, timeout=timeout,
    )
    return await calls.execute(
        calls.RELEASE_SHARED_PIECES, ask, budget=ask_budget(timeout, pieces),
        summary="tell the cluster workflow this target no longer uses its shared pieces",
    )


def hold_ttl(spec: RolloutSpec, steps: int) -> timedelta:
    """How long a hold outlives a rollout that disappeared: every phase budget, and the model
    load budget for each step. A hold past an approval gate may expire; by then the pods it
    stood for exist and are counted as pods."""
    timeouts = spec.budgets.phase_timeouts
    phases = (
        timeouts.preflight + timeouts.dependencies + timeouts.gateway_provider
        + timeouts.namespace + timeouts.infra + timeouts.model_service + timeouts.verify
    )
    return phases + spec.budgets.model_load * max(1, steps)


def hold_input(spec: RolloutSpec, roles: list[RoleName], steps: int) -> HoldCapacityInput:
    info = workflow.info()
    return HoldCapacityInput(
        spec=spec, roles=roles, owner=info.workflow_id, run_id=info.run_id,
        ttl=hold_ttl(spec, steps),
    )


def hold_detail(plan: CapacityPlan) -> str:
    placed = sum(1 for pod in plan.pods if pod.node is not None)
    nodes = sorted({pod.node for pod in plan.pods if pod.node is not None})
    waited = (
        f" after waiting {format_duration(timedelta(seconds=round(plan.waited_seconds)))} "
        "for capacity" if plan.waited_seconds >= 1 else ""
    )
    return (
        f"{plan.gpus_asked} GPUs held for {placed} pods on {', '.join(nodes) or 'no node'}"
        + waited
    )


async def free_capacity(spec: RolloutSpec, why: str, *, any_run: bool = False) -> None:
    """End this target's hold. A failure here never fails the rollout: the hold expires."""
    info = workflow.info()
    budget = spec.budgets.phase_timeouts.preflight
    try:
        await calls.execute(
            calls.FREE_CAPACITY,
            FreeAsk(
                cluster=spec.target.cluster, owner=info.workflow_id,
                run_id="" if any_run else info.run_id, why=why,
            ),
            budget=budget, summary=f"free the capacity hold ({why})",
        )
    except Exception as error:
        workflow.logger.warning("could not free the capacity hold (it expires): %s", error)


class ClusterAsks:
    """A rollout's side of its cluster's ClusterWorkflow (behind CLUSTER_WORKFLOW_PATCH, so
    histories recorded before it replay the old path): hold the capacity plan at preflight, ask
    for the shared pieces in phases 2 and 3, free the hold when the rollout ends."""

    def __init__(
        self, spec: RolloutSpec, progress: RolloutProgress, saga: Saga, steps: RolloutSteps
    ) -> None:
        self.spec = spec
        self.progress = progress
        self.saga = saga
        self.steps = steps
        self.holding = False
        # Read by preflight's hold; the ensure asks carry it, and their activities need not
        # read it again (a client and a GET each).
        self.cluster_uid = ""
        # Phases whose pieces went with an earlier phase's ask: no step boundary lies before
        # them (the rollout's pause checkpoint is skipped).
        self.asked_early: set[Phase] = set()

    async def hold(self, plan: RolloutPlan, report: PreflightReport) -> PreflightReport:
        """Hold what preflight placed, so concurrent rollouts never count one GPU twice; the
        report's capacity becomes the held plan."""
        if not workflow.patched(CLUSTER_WORKFLOW_PATCH):
            return report
        self.holding = True
        held = await self.steps.call(
            Phase.PREFLIGHT, "hold-capacity", calls.HOLD_CAPACITY,
            hold_input(self.spec, list(plan.changed_roles), len(plan.steps)),
            # Ended by the activity itself when a wait for capacity runs out (exit 5).
            budget=self.spec.budgets.phase_timeouts.preflight + self.spec.budgets.capacity_wait,
            summary="hold the capacity plan for this rollout",
            status=lambda r: StepStatus.PASSED, detail=hold_detail,
        )
        self.cluster_uid = held.cluster_uid
        return report.model_copy(update={"capacity": held})

    async def dependencies(self) -> bool:
        """Phase 2 through the cluster workflow, and with it phase 3 (ASKED_TOGETHER_PATCH);
        False when this run takes the old path."""
        if not workflow.patched(CLUSTER_WORKFLOW_PATCH):
            return False
        spec, timeouts = self.spec, self.spec.budgets.phase_timeouts
        pieces = dependency_pieces(spec)
        provider = provider_pieces(spec)
        if provider and workflow.patched(ASKED_TOGETHER_PATCH):
            # One ask: the provider's releases start once the CRD bundles are current, beside
            # the LWS release, instead of after it (a cold install's longest dependency).
            self.asked_early.add(Phase.GATEWAY_PROVIDER)
            await self._ensure(
                Phase.DEPENDENCIES, [*pieces, *provider],
                max(timeouts.dependencies, timeouts.gateway_provider),
                after=provider_after(pieces, provider),
                phases={piece.key: Phase.GATEWAY_PROVIDER for piece in provider},
            )
        elif pieces:
            # The CRD bundles and the LWS release do not depend on one another.
            await self._ensure(Phase.DEPENDENCIES, pieces, timeouts.dependencies, at_once=True)
        if spec.dependencies.leader_worker_set.release is None:
            self.progress.skip(Phase.DEPENDENCIES, "lws-controller", "already installed (spec)")
        return True

    async def gateway_provider(self) -> bool:
        """Phase 3 through the cluster workflow (unless asked with phase 2); False when this
        run takes the old path."""
        if not workflow.patched(CLUSTER_WORKFLOW_PATCH):
            return False
        if Phase.GATEWAY_PROVIDER not in self.asked_early:
            await self._ensure(Phase.GATEWAY_PROVIDER, provider_pieces(self.spec),
                               self.spec.budgets.phase_timeouts.gateway_provider)
        return True

    async def finish(self, outcome: str) -> None:
        if self.holding:
            await free_capacity(self.spec, outcome)

    async def _ensure(
        self, phase: Phase, pieces: list[SharedPiece], timeout: timedelta, *,
        at_once: bool = False, after: dict[str, list[str]] | None = None,
        phases: Mapping[str, Phase] | None = None,
    ) -> None:
        await ensure_shared(
            self.spec, phase, pieces, timeout, self.progress.journal, self.saga,
            self.progress.enter, self.progress.publish, self.cluster_uid, at_once=at_once,
            after=after, phases=phases,
        )
