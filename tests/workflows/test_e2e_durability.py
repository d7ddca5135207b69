"""End to end: a rollout survives its worker being SIGKILLed in every phase, and the Temporal
server being restarted during model load.

These tests own their Temporal dev server (one is restarted) and run the worker as a process of
its own (`python -m worker`), so it can be killed without a graceful shutdown. Kills are placed
with the `pause` update: the rollout holds before its next phase, the test resumes it and kills
the worker at once, while that phase's first step runs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from embedded.temporal import TemporalDevServer
from rollouts.observing import rollout_result
from rollouts.starting import start_rollout
from spec.workflow_io import (
    ROLLOUT_PHASES,
    Outcome,
    PauseRequest,
    Phase,
    Progress,
    ResumeRequest,
    RunState,
)
from tests.simcluster import SimCluster, sim_cluster_fixture
from tests.workflows.e2e import (
    TIME_SCALE,
    VENV_BIN,
    WorkerProcess,
    sim_spec,
    worker_process,
)
from tests.workflows.specs import image
from workflows.rollout import RolloutWorkflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.long]

ROLLOUT_TIMEOUT = 300.0
POLL = 0.05


sim = sim_cluster_fixture("sim-durability", scope="module", time_scale=TIME_SCALE)


@pytest_asyncio.fixture(loop_scope="session")
async def server(tmp_path: Path) -> AsyncIterator[TemporalDevServer]:
    dev_server = TemporalDevServer(tmp_path / "temporal.db")
    async with dev_server:
        yield dev_server


async def connect(server: TemporalDevServer) -> Client:
    return await Client.connect(
        server.address, namespace=server.namespace, data_converter=pydantic_data_converter
    )


async def progress_until(
    handle: WorkflowHandle[Any, Any], accept: Any, timeout: float = ROLLOUT_TIMEOUT
) -> Progress:
    """Poll the progress query (retrying while no worker answers) until `accept` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            progress: Progress = await asyncio.wait_for(
                handle.query(RolloutWorkflow.progress), 10
            )
        except Exception:
            await asyncio.sleep(0.5)
            continue
        if accept(progress):
            return progress
        await asyncio.sleep(POLL)
    raise AssertionError("timed out waiting for the rollout's progress")


def objects(sim: SimCluster, kind: str, namespace: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(VENV_BIN / "kubectl"), "get", kind, "-n", namespace, "-o", "json",
         "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    items: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    return [item for item in items if not item["metadata"].get("deletionTimestamp")]


def helm_revisions(sim: SimCluster, release: str, namespace: str) -> list[int]:
    done = subprocess.run(
        [str(VENV_BIN / "helm"), "history", release, "-n", namespace, "-o", "json",
         "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return [int(entry["revision"]) for entry in json.loads(done.stdout)]


def assert_installed_once(sim: SimCluster, namespace: str) -> None:
    """Exactly one Helm revision per release, one snapshot, and no extra pods or objects."""
    assert helm_revisions(sim, "infra-wide-ep", namespace) == [1]
    assert helm_revisions(sim, "istiod", "istio-system") == [1]
    assert helm_revisions(sim, "lws", "lws-system") == [1]
    assert len(objects(sim, "leaderworkersets", namespace)) == 2
    epp = [d for d in objects(sim, "deployments", namespace)
           if "llm-d.ai/epp" in d["metadata"].get("labels", {})]
    assert len(epp) == 1
    snapshots = [c for c in objects(sim, "configmaps", namespace)
                 if c["metadata"]["name"].startswith("llmd-rollout-snapshot-")]
    assert len(snapshots) == 1
    pods = objects(sim, "pods", namespace)
    vllm = [p for p in pods if p["metadata"].get("labels", {}).get("llm-d.ai/role")]
    assert len(vllm) == 3, [p["metadata"]["name"] for p in vllm]


def finished(progress: Progress) -> bool:
    return progress.state in (RunState.FINISHED, RunState.ROLLING_BACK)


async def kill_and_replace(worker: WorkerProcess) -> None:
    worker.kill()
    worker.start()
    await asyncio.sleep(0)


async def test_a_worker_killed_in_every_phase_is_replaced_and_the_rollout_finishes(
    server: TemporalDevServer, sim: SimCluster, tmp_path: Path
) -> None:
    client = await connect(server)
    task_queue = f"durability-{uuid.uuid4().hex[:8]}"
    spec = sim_spec("killed", sim)
    with worker_process(server.address, task_queue, tmp_path / "worker.log") as worker:
        handle = await start_rollout(client, spec, task_queue=task_queue)
        killed_in: list[str] = []
        # Preflight runs first thing: kill while its first call is out.
        await progress_until(handle, lambda p: p.phase == Phase.PREFLIGHT)
        await kill_and_replace(worker)
        killed_in.append(Phase.PREFLIGHT.value)
        for phase in ROLLOUT_PHASES[1:]:
            if phase == Phase.GATEWAY_PROVIDER:
                # Asked for with the dependencies, it has no step boundary (no pause) of its
                # own: the kill after the pause before the dependencies lands in that ask.
                continue
            if phase == Phase.MODEL_LOAD:
                # Long enough to catch without holding the rollout.
                now = await progress_until(
                    handle, lambda p: p.phase == Phase.MODEL_LOAD or finished(p)
                )
                if finished(now):
                    break
                await kill_and_replace(worker)
                killed_in.append(phase.value)
                continue
            await handle.execute_update(RolloutWorkflow.pause, PauseRequest(by="test"))
            held = await progress_until(
                handle, lambda p: p.state == RunState.PAUSED or finished(p)
            )
            if finished(held):
                break
            await handle.execute_update(RolloutWorkflow.resume, ResumeRequest(by="test"))
            await kill_and_replace(worker)
            resumed = await progress_until(handle, lambda p: p.step != "paused")
            killed_in.append(resumed.phase.value)
        result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)

    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert set(killed_in) == {p.value for p in ROLLOUT_PHASES} - {"gateway-provider"}, killed_in
    assert_installed_once(sim, spec.target.namespace)


async def test_the_temporal_server_restarted_during_model_load_does_not_stop_the_rollout(
    server: TemporalDevServer, sim: SimCluster, tmp_path: Path
) -> None:
    client = await connect(server)
    task_queue = f"restart-{uuid.uuid4().hex[:8]}"
    # The cluster's GPUs hold one stack: upgrade the one the previous test installed (or
    # install it, when run alone).
    spec = sim_spec("killed", sim, image("ghcr.io/llm-d/llm-d-dev:v0.2.1"))
    with worker_process(server.address, task_queue, tmp_path / "worker.log") as worker:
        handle = await start_rollout(client, spec, task_queue=task_queue)
        await progress_until(handle, lambda p: p.phase == Phase.MODEL_LOAD)
        await server.stop()
        await asyncio.sleep(2)
        await server.start()
        if worker.process is not None and worker.process.poll() is not None:
            worker.start()
        client = await connect(server)
        result = await asyncio.wait_for(
            rollout_result(client.get_workflow_handle_for(RolloutWorkflow.run, handle.id)),
            ROLLOUT_TIMEOUT,
        )

    assert result.outcome == Outcome.SUCCEEDED, result.failure
