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
from activities.capacity_hold import HeldHere, hold_capacity, one_planner_at_a_time
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


async def test_a_plan_overtaken_by_a_hold_of_this_process_is_made_again_before_it_is_sent(
    temporal_client: Client, queue: str, kube_api: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rollouts of one worker plan before their turns against the same view and choose
    the same nodes. The first holds them; the second's plan is made again around that hold
    before it is sent, so no reserve is refused (a refusal costs a query and a plan again,
    in the turn every other rollout waits for), and the two hold different nodes."""
    monkeypatch.setattr(capacity_hold, "_plan", first_free_pair)
    answers: list[bool] = []
    reserve = capacity_hold._reserve

    async def counted(*args: Any) -> bool:
        answers.append(await reserve(*args))
        return answers[-1]

    monkeypatch.setattr(capacity_hold, "_reserve", counted)
    env = ActivityEnvironment(client=temporal_client)
    env.info = dataclasses.replace(env.info, task_queue=queue)
    spec = demo_spec(kube_api.kubeconfig, f"overtaken-{uuid.uuid4().hex[:6]}")
    asks = [
        HoldCapacityInput(
            spec=spec, roles=["decode"], owner=f"rollout/{name}-{uuid.uuid4().hex[:6]}",
            run_id="run-1", ttl=timedelta(minutes=5),
        )
        for name in ("first", "second")
    ]

    async def in_turns() -> list[CapacityPlan | None]:
        handle = await capacity_hold._cluster_handle(temporal_client, spec.target.cluster)
        kube = cast(KubeClient, None)  # the stand-in planner reads no cluster
        before = [await capacity_hold._plan_now(handle, kube, ask) for ask in asks]
        held = []
        for ask, (view, plan, covered) in zip(asks, before, strict=True):
            assert reserved_nodes(plan).keys() == {"gpu-a", "gpu-b"}
            async with one_planner_at_a_time(handle.id):
                held.append(
                    await capacity_hold._hold_in_turn(handle, kube, ask, view, plan, covered)
                )
        return held

    first, second = await asyncio.wait_for(env.run(in_turns), WITHIN)

    assert answers == [True, True]
    assert first is not None and second is not None
    assert reserved_nodes(first).keys() == {"gpu-a", "gpu-b"}
    assert reserved_nodes(second).keys() == {"gpu-c", "gpu-d"}


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
    assert here.since(4) == holds[:2] and here.since(5) == holds[1:2] and here.since(6) == []

    here.add(7, holds[2])  # drops the hold of version 5
    assert here.since(4) is None
    assert here.since(5) == holds[1:] and here.since(7) == []
