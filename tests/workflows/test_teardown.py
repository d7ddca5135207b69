"""TeardownWorkflow: reverse order, shared pieces kept unless asked, never beside a rollout."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from rollouts.starting import TargetBusy, start_rollout, start_teardown
from spec.workflow_io import Outcome, StepStatus, TeardownInput
from tests.workflows.fakes import FakeCluster
from tests.workflows.scenarios import WAIT, installed
from tests.workflows.specs import demo_spec


async def test_teardown_removes_the_stack_in_reverse_order_and_keeps_shared_pieces(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = await installed(temporal_client, fake_cluster, fake_worker, "teardown-default")

    handle = await start_teardown(
        temporal_client, TeardownInput(spec=spec), task_queue=fake_worker
    )
    result = await asyncio.wait_for(handle.result(), WAIT)

    assert result.outcome == Outcome.REMOVED
    assert [s.name for s in result.steps] == [
        "model-service", "helm/infra-wide-ep", "namespace", "shared-pieces",
    ]
    assert all(s.status == StepStatus.CHANGED for s in result.steps[:-1])
    # The cluster workflow forgot the target as a user of its shared pieces and removed none.
    assert result.steps[-1].status == StepStatus.UNCHANGED
    assert fake_cluster.model_service is None and not fake_cluster.namespace
    assert set(fake_cluster.releases) == {"lws", "istiod"}
    assert any("gateway provider" in kept for kept in result.kept)
    assert any("CRDs" in kept for kept in result.kept)
    assert fake_cluster.last_known_good is None


async def test_teardown_removes_shared_pieces_when_asked_and_is_safe_to_repeat(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = await installed(temporal_client, fake_cluster, fake_worker, "teardown-all")
    request = TeardownInput(
        spec=spec, include_gateway_provider=True, include_dependencies=True, keep_namespace=True
    )

    first = await asyncio.wait_for(
        (await start_teardown(temporal_client, request, task_queue=fake_worker)).result(), WAIT
    )
    assert [s.name for s in first.steps] == [
        "model-service", "helm/infra-wide-ep", "hf-token-secret", "last-known-good",
        "shared-pieces",
    ]
    assert first.steps[-1].status == StepStatus.CHANGED
    assert "istio-system/istiod: uninstalled" in first.steps[-1].detail
    assert fake_cluster.releases == {}
    assert fake_cluster.names("helm_uninstall") == [
        "helm_uninstall:infra-wide-ep", "helm_uninstall:istiod", "helm_uninstall:lws",
    ]

    again = await asyncio.wait_for(
        (await start_teardown(temporal_client, request, task_queue=fake_worker)).result(), WAIT
    )
    helm_steps = [s for s in again.steps if s.name.startswith("helm/")]
    assert all(s.status == StepStatus.UNCHANGED for s in helm_steps)
    assert again.steps[-1].name == "shared-pieces"
    assert "uninstalled" not in again.steps[-1].detail  # the releases are absent now
    assert again.outcome == Outcome.REMOVED


async def test_teardown_is_refused_while_a_rollout_of_the_target_runs(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = demo_spec("teardown-busy")
    release = fake_cluster.hold("wait_for_model_load")
    rollout = await start_rollout(temporal_client, spec, task_queue=fake_worker)
    try:
        with pytest.raises(TargetBusy) as busy:
            await start_teardown(temporal_client, TeardownInput(spec=spec), task_queue=fake_worker)
        assert busy.value.workflow_id == rollout.id
    finally:
        release.set()
    await asyncio.wait_for(rollout.result(), WAIT)
