"""End to end: the demo stack installed by RolloutWorkflow with the real activities against
clustersim (real helm, real Kubernetes API over HTTPS, fake vLLM behind a simulated gateway).

One clustersim (h200-2node, 16 GPUs) for the module; the worker runs in-process on the session's
Temporal dev server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.registry import activities
from embedded.temporal import TemporalDevServer
from spec.workflow_io import ROLLOUT_PHASES, Outcome, Phase, StepStatus, TeardownInput
from tests.workflows.e2e import (
    HF_TOKEN,
    VENV_BIN,
    SimCluster,
    clustersim,
    history_bytes,
    sim_spec,
    worker_environment,
)
from workflows.observing import rollout_result
from workflows.registry import WORKFLOWS
from workflows.starting import start_rollout, start_teardown

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLLOUT_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    with clustersim(tmp_path_factory.mktemp("sim-install")) as cluster:
        yield cluster


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def client(temporal_server: TemporalDevServer) -> Client:
    return await Client.connect(
        temporal_server.address, namespace=temporal_server.namespace,
        data_converter=pydantic_data_converter,
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def real_worker(client: Client) -> AsyncIterator[str]:
    """An in-process worker with the real activities; the HF token in its environment."""
    task_queue = f"e2e-install-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_TOKEN", "LLMD_HELM", "PATH"):
            patch.setenv(name, worker_environment()[name])
        with ThreadPoolExecutor(max_workers=16) as executor:
            async with Worker(
                client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities(),
                activity_executor=executor,
            ):
                yield task_queue


def helm_revisions(sim: SimCluster, release: str, namespace: str) -> list[int]:
    done = subprocess.run(
        [str(VENV_BIN / "helm"), "history", release, "-n", namespace, "-o", "json",
         "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return [int(entry["revision"]) for entry in json.loads(done.stdout)]


async def test_demo_installs_serves_and_an_unchanged_rerun_changes_nothing(
    client: Client, real_worker: str, sim: SimCluster
) -> None:
    spec = sim_spec("wide-ep", sim)
    handle = await start_rollout(client, spec, task_queue=real_worker)
    result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)

    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert [p.phase for p in result.phases] == list(ROLLOUT_PHASES)
    assert all(p.duration_seconds > 0 for p in result.phases)
    verify = next(s for s in result.steps if s.name == "verify")
    assert verify.status == StepStatus.PASSED
    assert "completion ok" in verify.detail and "disaggregation ok" in verify.detail
    history = history_bytes(await handle.fetch_history())
    assert HF_TOKEN.encode() not in history
    assert b"llm-d-hf-token" in history  # the Secret's name travels, its value never does

    again = await asyncio.wait_for(
        rollout_result(await start_rollout(client, spec, task_queue=real_worker)),
        ROLLOUT_TIMEOUT,
    )
    assert again.outcome == Outcome.SUCCEEDED, again.failure
    statuses = {p.phase: p.status for p in again.phases}
    for phase in (Phase.DEPENDENCIES, Phase.GATEWAY_PROVIDER, Phase.NAMESPACE, Phase.INFRA,
                  Phase.MODEL_SERVICE, Phase.RECORD):
        assert statuses[phase] == StepStatus.UNCHANGED, (phase, statuses[phase])
    # One Helm revision per release change: the re-run created none.
    assert helm_revisions(sim, "infra-wide-ep", spec.target.namespace) == [1]
    assert helm_revisions(sim, "istiod", "istio-system") == [1]
    assert helm_revisions(sim, "lws", "lws-system") == [1]


async def test_teardown_removes_the_stack_and_keeps_the_shared_pieces(
    client: Client, real_worker: str, sim: SimCluster
) -> None:
    spec = sim_spec("wide-ep", sim)
    handle = await start_teardown(client, TeardownInput(spec=spec), task_queue=real_worker)
    result = await asyncio.wait_for(handle.result(), ROLLOUT_TIMEOUT)

    assert result.outcome == Outcome.REMOVED
    assert [s.name for s in result.steps] == ["model-service", "helm/infra-wide-ep", "namespace"]
    assert helm_revisions(sim, "istiod", "istio-system") == [1]
    assert HF_TOKEN.encode() not in history_bytes(await handle.fetch_history())
