"""Capacity held between preflight and scheduling: a rollout's placement, reserved for it.

Where it sits: the last step of a rollout's preflight (phase 1). It plans where every pod goes
(k8s/capacity.py, node by node, honouring node selectors, affinities, tolerations and the
surge groups an LWS update creates) against the nodes, the pods and what other rollouts of the
cluster hold, then asks the cluster workflow (workflows/cluster.py) to hold the plan. The hold is
a compare-and-swap on the reservations' version: if another rollout reserved in between, the
plan is made again from the new view, so two rollouts never count the same GPUs (around the holds
this worker process took since its view, when those are what is in the way: HeldHere). A plan
that does not fit is refused with the node-level reason (InsufficientCapacity: exit 5, nothing
created).

A spec with `budgets.capacityWait` waits instead, planning again every few seconds, until its
plan fits (GPUs freed by another rollout's end, rollback or teardown) or the wait is over (then
the same refusal, saying how long it waited); a plan an empty cluster could not hold is refused
at once, as waiting would not help. It waits outside the holding turn.

`free_capacity` ends the hold when the rollout ends, whatever the outcome; a rollout that
disappears loses its hold when the reservation expires.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from activities.cluster import (
    CLUSTER_TASK_TIMEOUT,
    CLUSTER_WORKFLOW,
    answer_error,
    cluster_workflow,
    read_cluster_uid,
    update_slot,
    update_with_start,
    when_not_busy,
)
from activities.failures import failure, retryable, target_client
from activities.heartbeat import heartbeat_step, heartbeating, run_blocking
from activities.planner_turns import (
    held_here,
    one_planner_at_a_time,
    reading_of_holds,
    shares_a_node,
)
from activities.preflight import fits_an_empty_cluster_sync, plan_role_plans, role_plans
from k8s.capacity import shortened
from k8s.client import KubeClient
from k8s.quantity import Resources
from k8s.reservations import (
    covered_lws,
    held_by_others,
    node_level_reason,
    reserved_nodes,
)
from spec.activity_io import CapacityPlan, FailureEvidence
from spec.cluster_io import (
    ClusterInput,
    FreeAsk,
    HoldCapacityInput,
    Reservation,
    ReservationsView,
    ReserveAnswer,
    ReserveAsk,
    cluster_workflow_id,
)
from spec.reasons import FailureReason

# Plans made again when other rollouts keep reserving in between; then Temporal retries.
MAX_PLANS = 20

# How often a rollout that waits for capacity (budgets.capacityWait) plans again. A plan reads
# the worker's shared watches of nodes and pods and one query of the holds, so a waiting rollout
# costs little; GPUs freed are taken within this long.
RECHECK_SECONDS = 5.0

async def _cluster_handle(client: Client, cluster: str) -> WorkflowHandle[object, object]:
    task_queue = activity.info().task_queue
    workflow_id = cluster_workflow_id(cluster, task_queue)
    await client.start_workflow(
        CLUSTER_WORKFLOW, ClusterInput(cluster=cluster), id=workflow_id, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        task_timeout=CLUSTER_TASK_TIMEOUT,
    )
    # No run ID: queries and updates follow the workflow across continue-as-new.
    return client.get_workflow_handle(workflow_id)


def _plan(
    kube: KubeClient, input: HoldCapacityInput, held: dict[str, Resources], covers: set[str]
) -> tuple[CapacityPlan, list[str]]:
    roles = role_plans(kube, input.spec, list(input.roles))
    plan = shortened(plan_role_plans(kube, input.spec, roles, held, covers, salt=input.owner))
    return plan, covered_lws(roles)


def refusal(plan: CapacityPlan, wait: CapacityWait | None = None) -> ApplicationError:
    reason = node_level_reason(plan)
    message = (
        f"insufficient capacity: {reason} ({plan.gpus_asked} GPUs asked, "
        f"{plan.gpus_available} free after what other rollouts hold)"
    )
    if wait is not None and wait.possible is False:
        message += "; not waited for: the nodes could not hold it even with nothing else on them"
    elif wait is not None and wait.since is not None:
        message += f"; waited {wait.waited():.0f}s for it (budgets.capacityWait)"
    return failure(
        FailureReason.INSUFFICIENT_CAPACITY, message,
        FailureEvidence(
            reason=FailureReason.INSUFFICIENT_CAPACITY.value, message=message,
            data={"plan": plan.model_dump(mode="json"), "plan_text": plan.render()},
        ),
    )


async def _plan_now(
    handle: WorkflowHandle[object, object], kube: KubeClient, input: HoldCapacityInput
) -> tuple[ReservationsView, CapacityPlan, list[str]]:
    """The reservations on this cluster as they stand, and this rollout's plan against them."""
    view = await heartbeating(
        asyncio.shield(reading_of_holds(handle, input.cluster_uid)), "reading the capacity holds"
    )
    plan, covered = await _plan_against(kube, input, view.reservations)
    return view, plan, covered


async def _plan_around(
    kube: KubeClient, input: HoldCapacityInput, view: ReservationsView, holds: list[Reservation]
) -> tuple[CapacityPlan, list[str]]:
    """A plan against `view` and `holds` taken since it (a later hold of an owner replaces its
    earlier one, as in the cluster workflow)."""
    by_owner = {hold.owner: hold for hold in [*view.reservations, *holds]}
    return await _plan_against(kube, input, list(by_owner.values()))


async def _plan_against(
    kube: KubeClient, input: HoldCapacityInput, reservations: list[Reservation]
) -> tuple[CapacityPlan, list[str]]:
    held, covers = held_by_others(reservations, input.owner, datetime.now(UTC))
    return await run_blocking(functools.partial(_plan, kube, input, held, covers), "capacity plan")


def places_anything(plan: CapacityPlan) -> bool:
    """Whether the plan puts a pod on a node (an unchanged re-run places nothing, holds
    nothing)."""
    return any(pod.node for pod in plan.pods)


@dataclasses.dataclass
class CapacityWait:
    """A rollout's wait for capacity (budgets.capacityWait): until when (counted from the first
    attempt), since when it waits, and whether an empty cluster could hold its plan at all."""

    deadline: datetime
    since: float | None = None
    possible: bool | None = None

    @classmethod
    def of(cls, input: HoldCapacityInput) -> CapacityWait:
        scheduled = activity.info().scheduled_time
        if scheduled.tzinfo is None:
            scheduled = scheduled.replace(tzinfo=UTC)
        return cls(deadline=scheduled + input.spec.budgets.capacity_wait)

    def waited(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


async def _fitting_plan(
    handle: WorkflowHandle[object, object], kube: KubeClient, input: HoldCapacityInput,
    wait: CapacityWait,
) -> tuple[ReservationsView, CapacityPlan, list[str]]:
    """A plan that fits, made again every RECHECK_SECONDS while the wait lasts; refused (exit
    5) when the wait is over, or at once when even an empty cluster could not hold it."""
    while True:
        view, plan, covered = await _plan_now(handle, kube, input)
        if plan.fits:
            return view, plan, covered
        now = datetime.now(UTC)
        if now < wait.deadline and wait.possible is None:
            wait.possible = await run_blocking(
                functools.partial(
                    fits_an_empty_cluster_sync, kube, input.spec, list(input.roles)
                ),
                "capacity plan",
            )
        if now >= wait.deadline or not wait.possible:
            raise refusal(plan, wait)
        if wait.since is None:
            wait.since = time.monotonic()
            activity.logger.info(
                "%s waits for capacity: %s", input.owner, node_level_reason(plan)
            )
        heartbeat_step(f"waiting for capacity: {node_level_reason(plan)}")
        await asyncio.sleep(min(RECHECK_SECONDS, (wait.deadline - now).total_seconds()))


def _reservation(input: HoldCapacityInput, plan: CapacityPlan, covered: list[str]) -> Reservation:
    return Reservation(
        owner=input.owner, run_id=input.run_id, target_id=input.spec.target_id,
        nodes=reserved_nodes(plan), covers=covered,
        expires_at=datetime.now(UTC) + input.ttl,
    )


async def _reserve(
    handle: WorkflowHandle[object, object], input: HoldCapacityInput, reservation: Reservation,
    based_on: int,
) -> int | None:
    """Hold `reservation` unless another rollout took one of its nodes since version
    `based_on`: the version it was taken at, or None."""
    # `reserve` answers at once (no work behind it), so it holds no update open.
    ask = ReserveAsk(reservation=reservation, based_on=based_on, cluster_uid=input.cluster_uid)
    async with update_slot(handle.id):
        answer: ReserveAnswer = await heartbeating(
            when_not_busy(
                functools.partial(
                    handle.execute_update, "reserve", ask,
                    id=f"reserve/{input.owner}/{input.run_id}/{based_on}",
                    result_type=ReserveAnswer,
                )
            ),
            "holding the capacity plan",
        )
    if not answer.accepted:
        return None
    activity.logger.info("capacity held for %s: %s", input.owner, reservation.nodes)
    return answer.version


@activity.defn
async def hold_capacity(input: HoldCapacityInput) -> CapacityPlan:
    """Plan against what others hold and hold the plan; refuse when it does not fit (after
    the spec's wait for capacity, if any: see the module doc).

    A plan that does not fit, or places nothing new, is the answer at once. Only a plan to hold
    waits for this process's turn; in its turn it is held unless another rollout took one of
    its nodes since its view (the cluster workflow's compare-and-swap), else made again from a
    fresh view. Fifty warm rollouts (nothing to place) took turns for nothing: 7-10 s p95 at
    N=50 (bench/concurrency.py)."""
    handle = await _cluster_handle(activity.client(), input.spec.target.cluster)
    wait = CapacityWait.of(input)
    try:
        async with target_client(input.spec.target) as kube:
            input = input.model_copy(update={"cluster_uid": await read_cluster_uid(kube)})
            while True:
                view, plan, covered = await _fitting_plan(handle, kube, input, wait)
                if places_anything(plan):
                    held = await _hold(handle, kube, input, view, plan, covered)
                    if held is None:
                        continue  # another rollout took the room while this one waited its turn
                    plan = held
                # Which cluster it was planned on, and how long it waited for capacity.
                return plan.model_copy(
                    update={"cluster_uid": input.cluster_uid, "waited_seconds": wait.waited()}
                )
    except WorkflowUpdateFailedError as error:
        raise answer_error(error, "holding capacity") from None


async def _hold(
    handle: WorkflowHandle[object, object], kube: KubeClient, input: HoldCapacityInput,
    view: ReservationsView, plan: CapacityPlan, covered: list[str],
) -> CapacityPlan | None:
    """Hold `plan`, or, while other rollouts take one of its nodes first, a plan made again;
    None when a plan made again no longer fits.

    In this process's turn the plan is made again around the holds taken or sent here since its
    view (HeldHere), if it shares a node with one, and sent; the answer is awaited after the
    turn, so the next rollout plans while this one's update is on its way, and one task of the
    cluster workflow answers several. (Awaited in the turn, fifty holds took fifty round trips
    one after another: 17-19 s p95 at N=50 cold.) A refusal, from another process's hold, makes
    the plan again from a fresh view."""
    here = held_here(handle.id)
    for _ in range(MAX_PLANS):
        async with one_planner_at_a_time(handle.id):
            known = here.since(view.version)
            if known is None:
                view, plan, covered = await _plan_now(handle, kube, input)
            else:
                taken, sent = known  # taken by this process since the view, and on their way
                if shares_a_node(plan, input.owner, [*taken, *sent]):
                    plan, covered = await _plan_around(kube, input, view, [*taken, *sent])
                    if not plan.fits and sent:
                        # It fits if a hold still on its way is refused: a plan around the
                        # holds taken is sent, and the swap decides.
                        plan, covered = await _plan_around(kube, input, view, taken)
            if not plan.fits:
                return None
            if not places_anything(plan):
                return plan
            reservation = _reservation(input, plan, covered)
            token = here.send(reservation)
            answer = asyncio.ensure_future(_reserve(handle, input, reservation, view.version))
        version = None
        try:
            version = await answer
        finally:
            if not answer.done():
                answer.cancel()
            here.answered(token, version)
        if version is not None:
            return plan
        # Taken by another process on one of the plan's nodes since the view: plan again.
        view, plan, covered = await _plan_now(handle, kube, input)
    raise retryable(
        "CapacityContended",
        f"other rollouts kept reserving while this one planned ({MAX_PLANS} plans)",
        # Still contended when the hold's budget ends: the GPUs went to other rollouts.
        FailureReason.INSUFFICIENT_CAPACITY,
    )


@activity.defn
async def free_capacity(ask: FreeAsk) -> ReserveAnswer:
    """End the rollout's hold (a no-op when it holds nothing)."""
    client = activity.client()
    try:
        answer: ReserveAnswer = await heartbeating(
            when_not_busy(
                lambda: update_with_start(
                    client, cluster_workflow(client, ask.cluster), "free", ask,
                    workflow_id=cluster_workflow_id(ask.cluster, activity.info().task_queue),
                    id=f"free/{ask.owner}/{ask.run_id}", result_type=ReserveAnswer,
                )
            ),
            "freeing the capacity hold",
        )
    except WorkflowUpdateFailedError as error:
        raise answer_error(error, "freeing capacity") from None
    return answer
