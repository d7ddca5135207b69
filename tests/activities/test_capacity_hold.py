"""hold_capacity on a real dev server (its ClusterWorkflow) and clustersim: a plan that is its
own answer (nothing new to place, or refused) does not wait for this process's holding turn.

Fifty warm rollouts of one worker (every pod in place, nothing to hold) took the turn one after
another, for nothing: the hold's p95 was 7-10 s at N=50 (bench/concurrency.py). Each test holds
the turn itself, as another rollout in its turn would, for the whole call.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import capacity_hold
from activities.capacity_hold import hold_capacity
from activities.planner_turns import HeldHere, held_here, one_planner_at_a_time
from k8s.client import KubeClient
from k8s.reservations import reserved_nodes
from spec.activity_io import CapacityPlan, PodDemand
from spec.cluster_io import HoldCapacityInput, Reservation, cluster_workflow_id
from spec.reasons import FailureReason
from spec.rollout import ROLES, RoleName, RolloutSpec
from tests.activities.conftest import SimCluster
from tests.activities.specs import demo_spec
from workflows.cluster import ClusterWorkflow
from workflows.registry import workflow_runner

# Far longer than a plan takes; a call that waits for the turn waits until this ends it.
WITHIN = 30.0


@pytest_asyncio.fixture(loop_scope="session")
async def queue(temporal_client: Client) -> AsyncIterator[str]:
    """A task queue with a worker running the cluster workflows started on it."""
    name = f"holds-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=name, workflows=[ClusterWorkflow],
        workflow_runner=workflow_runner(),
    ):
        yield name


async def hold_in_anothers_turn(
    client: Client, queue: str, spec: RolloutSpec, roles: list[RoleName]
) -> CapacityPlan:
    env = ActivityEnvironment(client=client)
    env.info = dataclasses.replace(env.info, task_queue=queue)
    ask = HoldCapacityInput(
        spec=spec, roles=roles, owner=f"rollout/{uuid.uuid4().hex[:6]}", run_id="run-1",
        ttl=timedelta(minutes=5),
    )
    async with one_planner_at_a_time(cluster_workflow_id(spec.target.cluster, queue)):
        return await asyncio.wait_for(env.run(hold_capacity, ask), WITHIN)


async def test_nothing_new_to_place_is_answered_without_waiting_for_the_turn(
    temporal_client: Client, queue: str, kube_api: SimCluster
) -> None:
    spec = demo_spec(kube_api.kubeconfig, f"warm-{uuid.uuid4().hex[:6]}")

    plan = await hold_in_anothers_turn(temporal_client, queue, spec, roles=[])

    assert plan.fits and plan.pods == []


async def test_a_plan_that_does_not_fit_is_refused_without_waiting_for_the_turn(
    temporal_client: Client, queue: str, kube_api: SimCluster
) -> None:
    # This cluster has no nodes: no GPU for either role.
    spec = demo_spec(kube_api.kubeconfig, f"cold-{uuid.uuid4().hex[:6]}")

    with pytest.raises(ApplicationError) as refused:
        await hold_in_anothers_turn(temporal_client, queue, spec, roles=list(ROLES))

    assert refused.value.type == FailureReason.INSUFFICIENT_CAPACITY.value
    assert refused.value.non_retryable


async def test_a_wait_for_capacity_is_not_made_when_even_an_empty_cluster_could_not_hold_it(
    temporal_client: Client, queue: str, kube_api: SimCluster
) -> None:
    """budgets.capacityWait waits for GPUs others use or hold; on nodes that could never hold
    the plan (this cluster has none) waiting would not help: refused at once, saying so."""
    spec = demo_spec(kube_api.kubeconfig, f"never-{uuid.uuid4().hex[:6]}")
    budgets = spec.budgets.model_copy(update={"capacity_wait": timedelta(minutes=10)})
    spec = spec.model_copy(update={"budgets": budgets})
    env = ActivityEnvironment(client=temporal_client)
    env.info = dataclasses.replace(
        env.info, task_queue=queue, scheduled_time=datetime.now(UTC)
    )
    ask = HoldCapacityInput(
        spec=spec, roles=list(ROLES), owner=f"rollout/{uuid.uuid4().hex[:6]}", run_id="run-1",
        ttl=timedelta(minutes=5),
    )

    with pytest.raises(ApplicationError) as refused:
        await asyncio.wait_for(env.run(hold_capacity, ask), WITHIN)

    assert refused.value.type == FailureReason.INSUFFICIENT_CAPACITY.value
    assert "not waited for: the nodes could not hold it" in refused.value.message


NODES = ("gpu-a", "gpu-b", "gpu-c", "gpu-d")


def first_free_pair(
    kube: object, ask: HoldCapacityInput, held: dict[str, object], covers: set[str]
) -> tuple[CapacityPlan, list[str]]:
    """A stand-in for the node-by-node planner: two 8-GPU pods on the first two nodes nobody
    else holds."""
    free = [node for node in NODES if node not in held][:2]
    pods = [
        PodDemand(
            name=f"decode-{i}", role="decode", group=i, requests={"nvidia.com/gpu": "8"},
            node=node,
        )
        for i, node in enumerate(free)
    ]
    plan = CapacityPlan(
        fits=len(free) == 2, gpus_asked=16, gpus_available=8 * len(free),
        asked={"nvidia.com/gpu": "16"}, available={}, pods=pods, nodes=[],
    )
    return plan, []


def holds_of_two_rollouts(spec: RolloutSpec) -> list[HoldCapacityInput]:
    return [
        HoldCapacityInput(
            spec=spec, roles=["decode"], owner=f"rollout/{name}-{uuid.uuid4().hex[:6]}",
            run_id="run-1", ttl=timedelta(minutes=5),
        )
        for name in ("first", "second")
    ]


def in_the_activity(client: Client, queue: str) -> ActivityEnvironment:
    env = ActivityEnvironment(client=client)
    env.info = dataclasses.replace(env.info, task_queue=queue)
    return env


# The stand-in planner reads no cluster.
NO_CLUSTER = cast(KubeClient, None)


async def test_a_plan_overtaken_by_a_hold_of_this_process_is_made_again_before_it_is_sent(
    temporal_client: Client, queue: str, kube_api: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rollouts of one worker plan before their turns against the same view and choose
    the same nodes. The first holds them; the second's plan is made again around that hold
    before it is sent, so no reserve is refused (a refusal costs a query and a plan again),
    and the two hold different nodes."""
    monkeypatch.setattr(capacity_hold, "_plan", first_free_pair)
    answers: list[int | None] = []
    reserve = capacity_hold._reserve

    async def counted(*args: Any) -> int | None:
        answers.append(await reserve(*args))
        return answers[-1]

    monkeypatch.setattr(capacity_hold, "_reserve", counted)
    spec = demo_spec(kube_api.kubeconfig, f"overtaken-{uuid.uuid4().hex[:6]}")
    asks = holds_of_two_rollouts(spec)

    async def one_after_the_other() -> list[CapacityPlan | None]:
        handle = await capacity_hold._cluster_handle(temporal_client, spec.target.cluster)
        before = [await capacity_hold._plan_now(handle, NO_CLUSTER, ask) for ask in asks]
        assert [reserved_nodes(plan).keys() for _, plan, _ in before] == [{"gpu-a", "gpu-b"}] * 2
        return [
            await capacity_hold._hold(handle, NO_CLUSTER, ask, view, plan, covered)
            for ask, (view, plan, covered) in zip(asks, before, strict=True)
        ]

    first, second = await asyncio.wait_for(
        in_the_activity(temporal_client, queue).run(one_after_the_other), WITHIN
    )

    assert len(answers) == 2 and None not in answers
    assert first is not None and reserved_nodes(first).keys() == {"gpu-a", "gpu-b"}
    assert second is not None and reserved_nodes(second).keys() == {"gpu-c", "gpu-d"}


async def test_the_next_rollout_plans_and_sends_its_hold_while_the_answer_to_one_is_out(
    temporal_client: Client, queue: str, kube_api: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holding turn covers the plan and the sending, not the answer: while the first
    rollout's hold is on its way, the second plans around it and holds other nodes. (Answers
    awaited in the turn made fifty holds fifty round trips in a row: 17-19 s p95 at N=50.)"""
    monkeypatch.setattr(capacity_hold, "_plan", first_free_pair)
    spec = demo_spec(kube_api.kubeconfig, f"pipelined-{uuid.uuid4().hex[:6]}")
    asks = holds_of_two_rollouts(spec)
    first_sent, answer_first = asyncio.Event(), asyncio.Event()
    reserve = capacity_hold._reserve

    async def first_answered_late(
        handle: Any, ask: HoldCapacityInput, reservation: Reservation, based_on: int
    ) -> int | None:
        if ask.owner == asks[0].owner:
            first_sent.set()
            await answer_first.wait()
        return await reserve(handle, ask, reservation, based_on)

    monkeypatch.setattr(capacity_hold, "_reserve", first_answered_late)

    async def second_while_first_is_out() -> list[CapacityPlan | None]:
        handle = await capacity_hold._cluster_handle(temporal_client, spec.target.cluster)
        before = [await capacity_hold._plan_now(handle, NO_CLUSTER, ask) for ask in asks]
        first = asyncio.ensure_future(capacity_hold._hold(handle, NO_CLUSTER, asks[0], *before[0]))
        await first_sent.wait()
        try:
            second = await asyncio.wait_for(
                capacity_hold._hold(handle, NO_CLUSTER, asks[1], *before[1]), WITHIN / 3
            )
        finally:
            answer_first.set()
        return [await first, second]

    first, second = await asyncio.wait_for(
        in_the_activity(temporal_client, queue).run(second_while_first_is_out), WITHIN
    )

    assert first is not None and reserved_nodes(first).keys() == {"gpu-a", "gpu-b"}
    assert second is not None and reserved_nodes(second).keys() == {"gpu-c", "gpu-d"}


def test_the_holds_taken_here_are_said_only_while_none_since_a_view_was_dropped() -> None:
    """HeldHere keeps the latest holds only; asked about a view older than one it dropped, it
    cannot say what was taken since (the planner then reads the cluster workflow again)."""
    here = HeldHere(held=collections.deque(maxlen=2))
    holds = [
        Reservation(
            owner=f"rollout/{i}", run_id="run-1", target_id=f"t{i}",
            nodes={f"gpu-{i}": {"nvidia.com/gpu": "8"}}, expires_at=datetime.now(UTC),
        )
        for i in range(3)
    ]
    for version, hold in enumerate(holds[:2], start=5):
        here.add(version, hold)
    assert here.since(4) == (holds[:2], [])
    assert here.since(5) == (holds[1:2], []) and here.since(6) == ([], [])

    here.add(7, holds[2])  # drops the hold of version 5
    assert here.since(4) is None
    assert here.since(5) == (holds[1:], []) and here.since(7) == ([], [])


def test_a_hold_on_its_way_counts_until_its_answer_and_then_only_if_taken() -> None:
    here = HeldHere()
    hold = Reservation(
        owner="rollout/a", run_id="run-1", target_id="a",
        nodes={"gpu-a": {"nvidia.com/gpu": "8"}}, expires_at=datetime.now(UTC),
    )
    refused, taken = here.send(hold), here.send(hold)
    assert here.since(0) == ([], [hold, hold])
    here.answered(refused, None)
    here.answered(taken, 3)
    assert here.since(0) == ([hold], []) and here.since(3) == ([], [])


async def test_a_plan_that_fits_only_if_a_hold_on_its_way_is_refused_is_sent_for_the_swap(
    temporal_client: Client, queue: str, kube_api: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Holds sent by this worker and not yet answered cover every node. Around them the plan
    does not fit; but one of them may yet be refused (another worker took its nodes), so the
    plan around the holds taken is sent and the cluster workflow's swap decides. (Turned away
    instead, the rollout planned again and again until those answers came.)"""
    monkeypatch.setattr(capacity_hold, "_plan", first_free_pair)
    spec = demo_spec(kube_api.kubeconfig, f"on-its-way-{uuid.uuid4().hex[:6]}")
    [ask] = holds_of_two_rollouts(spec)[:1]

    async def hold_beside_two_on_their_way() -> CapacityPlan | None:
        handle = await capacity_hold._cluster_handle(temporal_client, spec.target.cluster)
        view, plan, covered = await capacity_hold._plan_now(handle, NO_CLUSTER, ask)
        here = held_here(handle.id)
        for owner, nodes in (("rollout/x", ("gpu-a", "gpu-b")), ("rollout/y", ("gpu-c", "gpu-d"))):
            here.send(Reservation(
                owner=owner, run_id="run-1", target_id=owner,
                nodes={node: {"nvidia.com/gpu": "8"} for node in nodes},
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            ))
        return await capacity_hold._hold(handle, NO_CLUSTER, ask, view, plan, covered)

    held = await asyncio.wait_for(
        in_the_activity(temporal_client, queue).run(hold_beside_two_on_their_way), WITHIN
    )

    assert held is not None and reserved_nodes(held).keys() == {"gpu-a", "gpu-b"}
