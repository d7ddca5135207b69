"""hold_capacity on a real dev server (its ClusterWorkflow) and clustersim: a plan that is its
own answer (nothing new to place, or refused) does not wait for this process's holding turn.

Fifty warm rollouts of one worker (every pod in place, nothing to hold) took the turn one after
another, for nothing: the hold's p95 was 7-10 s at N=50 (bench/concurrency.py). Each test holds
the turn itself, as another rollout in its turn would, for the whole call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.capacity_hold import hold_capacity, one_planner_at_a_time
from spec.activity_io import CapacityPlan
from spec.cluster_io import HoldCapacityInput, cluster_workflow_id
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
