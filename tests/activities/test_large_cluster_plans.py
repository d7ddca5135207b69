"""A rollout on a cluster of many nodes records a capacity plan of bounded size: preflight and
the capacity hold return the nodes the plan places pods on and the NODES_SHOWN nodes with the
most GPUs free, and count the rest. A plan of every node travels in activity results and
failures into the workflow's history: 51 KB at 100 nodes, 500 KB at 1,000 (Temporal warns at
512 KB and fails a payload over 2 MB). Here: 40 nodes, on clustersim and a real dev server."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import preflight
from activities.capacity_hold import hold_capacity
from k8s.capacity import NODES_SHOWN
from spec.activity_io import CapacityPlan, PreflightInput
from spec.cluster_io import HoldCapacityInput
from spec.rollout import ROLES, RolloutSpec
from tests.activities.specs import demo_spec, environment
from tests.simcluster import SimCluster, nodes_profile, running_sim_cluster
from workflows.cluster import ClusterWorkflow
from workflows.registry import workflow_runner

NODES = 40


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def large_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[SimCluster]:
    workdir = tmp_path_factory.mktemp("large")
    async with running_sim_cluster(
        workdir, time_scale=0.01, profile=nodes_profile(workdir, NODES)
    ) as cluster:
        yield cluster


def on(cluster: SimCluster) -> RolloutSpec:
    return demo_spec(cluster.kubeconfig, namespace=f"big-{uuid.uuid4().hex[:6]}")


def assert_bounded(plan: CapacityPlan) -> None:
    placed = [node for node in plan.nodes if node.placed]
    assert plan.fits and placed
    assert len(plan.nodes) == len(placed) + NODES_SHOWN
    assert plan.nodes_not_shown == NODES - len(plan.nodes)
    assert f"... and {plan.nodes_not_shown} more node(s)" in plan.render()


async def test_preflight_records_the_nodes_it_uses_not_every_node(
    large_cluster: SimCluster,
) -> None:
    report = await environment().run(preflight.preflight, PreflightInput(spec=on(large_cluster)))
    assert_bounded(report.capacity)


async def test_the_capacity_hold_records_the_nodes_it_holds_not_every_node(
    large_cluster: SimCluster, temporal_client: Client
) -> None:
    queue = f"large-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[ClusterWorkflow],
        workflow_runner=workflow_runner(),
    ):
        env = ActivityEnvironment(client=temporal_client)
        env.info = dataclasses.replace(env.info, task_queue=queue)
        plan = await env.run(hold_capacity, HoldCapacityInput(
            spec=on(large_cluster), roles=list(ROLES), owner=f"rollout/{queue}",
            run_id="run-1", ttl=timedelta(minutes=5),
        ))
    assert_bounded(plan)
