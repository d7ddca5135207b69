"""End to end with least privilege: the worker authenticated as the worker chart's
ServiceAccount (a TokenRequest token, never the admin one) installs the demo, upgrades it behind
an approval gate, rolls a crash-looping upgrade back and tears it down with exactly the chart's
rules (charts/llmd-rollout-worker/values.yaml, rendered by the pinned helm, enforced by
clustersim's RBAC).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from rollouts.observing import rollout_result
from rollouts.starting import start_rollout, start_teardown
from spec.reasons import FailureReason
from spec.rollout import RolloutSpec
from spec.workflow_io import ApproveRequest, Outcome, RunState, TeardownInput
from tests.simcluster import SimCluster, sim_cluster_fixture
from tests.workflows.e2e import TIME_SCALE, sim_spec, small_decode_pods
from tests.workflows.scenarios import query, until
from tests.workflows.specs import Change, decode_steps, image
from tests.workflows.worker_rbac import WorkerIdentity, worker_identity
from workflows.rollout import RolloutWorkflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLLOUT_TIMEOUT = 240.0
NAMESPACE = "llm-d-wide-ep"
VLLM = "ghcr.io/llm-d/llm-d-dev"
CANARY = decode_steps({"partition": 1, "approval": True})

sim = sim_cluster_fixture("sim-rbac", scope="module", time_scale=TIME_SCALE)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def identity(sim: SimCluster, tmp_path_factory: pytest.TempPathFactory) -> WorkerIdentity:
    return worker_identity(sim, tmp_path_factory.mktemp("worker-sa"), [NAMESPACE])


def as_worker(identity: WorkerIdentity, *changes: Change) -> RolloutSpec:
    """The demo spec aimed at the cluster through the ServiceAccount's kubeconfig."""

    def through_service_account(document: dict[str, object]) -> None:
        target = document["target"]
        assert isinstance(target, dict)
        target["kubeconfig"] = str(identity.kubeconfig)

    return sim_spec("least-privilege", identity.sim, small_decode_pods, *changes,
                    through_service_account)


async def test_install_gated_upgrade_rollback_and_teardown_with_only_the_charts_rules(
    client: Client, real_worker: str, identity: WorkerIdentity
) -> None:
    assert Path(identity.kubeconfig).read_text() != identity.sim.kubeconfig.read_text()
    installed = await asyncio.wait_for(
        rollout_result(await start_rollout(
            client, as_worker(identity, image(f"{VLLM}:v0.2.0")), task_queue=real_worker
        )),
        ROLLOUT_TIMEOUT,
    )
    assert installed.outcome == Outcome.SUCCEEDED, installed.failure

    handle = await start_rollout(
        client, as_worker(identity, CANARY, image(f"{VLLM}:v0.2.1")), task_queue=real_worker
    )
    waiting = await until(
        query(handle),
        lambda p: p.state in (RunState.WAITING_FOR_APPROVAL, RunState.FINISHED),
        ROLLOUT_TIMEOUT,
    )
    assert waiting.state == RunState.WAITING_FOR_APPROVAL, waiting.diagnosis
    await handle.execute_update(RolloutWorkflow.approve, ApproveRequest(by="e2e-rbac"))
    upgraded = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)
    assert upgraded.outcome == Outcome.SUCCEEDED, upgraded.failure

    crashing = f"{VLLM}:v9.crash"
    identity.sim.fault("crash", "--image", crashing, "--count", "1000", "--after", "5")
    try:
        rolled_back = await asyncio.wait_for(
            rollout_result(await start_rollout(
                client, as_worker(identity, image(crashing)), task_queue=real_worker
            )),
            ROLLOUT_TIMEOUT,
        )
    finally:
        identity.sim.fault("clear")
    assert rolled_back.outcome == Outcome.ROLLED_BACK, rolled_back.failure
    assert rolled_back.failure is not None
    assert rolled_back.failure.reason == FailureReason.CRASH_LOOP, rolled_back.failure
    assert rolled_back.rollback is not None and rolled_back.rollback.verified

    teardown = await start_teardown(
        client, TeardownInput(spec=as_worker(identity, image(f"{VLLM}:v0.2.1"))),
        task_queue=real_worker,
    )
    removed = await asyncio.wait_for(teardown.result(), ROLLOUT_TIMEOUT)
    assert removed.outcome == Outcome.REMOVED, removed.steps
