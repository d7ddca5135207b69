"""Record workflow histories of runs with the real activities against clustersim
(tests/histories/real-*.json), which tests/workflows/test_replay.py replays beside the others.

    .venv/bin/python -m tests.workflows.record_real_histories            # the three rollouts
    .venv/bin/python -m tests.workflows.record_real_histories cluster    # the cluster workflow

One clustersim (h200-2node) and one target, in order: a fresh install, a decode canary behind an
approval gate, and an upgrade to an image that crash-loops, which rolls back. `cluster` records
the ClusterWorkflow instead (real-cluster-workflow.json): a fresh install's holds and shared
pieces, then a teardown with --include-dependencies that removes them; it is still running
when recorded, as a ClusterWorkflow always is, and replays as far as it went. With it, that
fresh install (real-rollout-asked-together.json: its dependencies and gateway provider in one
ask, its roles created before the endpoint picker is waited for). Kept for the paths of earlier
builds: real-cluster-workflow-in-order.json (dependencies asks ran their pieces in order) and
real-cluster-workflow-two-asks.json (the dependencies and the gateway provider asked for one
after the other), as the three rollouts above. The stand-in
histories of record_histories.py carry the stand-ins' answers; these carry what the real
activities answer (helm revisions, apply results, heartbeats' last details), so a change to a
result type or to the order of commands the real answers lead to fails replay as well.

The worker runs in-process with the e2e HF token in its environment; a history that contains
the token is not written. Re-record only on purpose (see record_histories.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.registry import activities
from embedded.temporal import TemporalDevServer
from rollouts.observing import rollout_result
from rollouts.starting import start_rollout, start_teardown
from spec.cluster_io import cluster_workflow_id
from spec.rollout import RolloutSpec
from spec.workflow_io import ApproveRequest, Outcome, RolloutResult, TeardownInput
from tests.simcluster import SimCluster, running_sim_cluster
from tests.workflows.e2e import (
    HF_TOKEN,
    TIME_SCALE,
    history_bytes,
    sim_spec,
    small_decode_pods,
    worker_environment,
)
from tests.workflows.scenarios import query, until
from tests.workflows.specs import Change, decode_steps, image
from workflows.registry import WORKFLOWS, workflow_runner
from workflows.rollout import RolloutWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
ROLLOUT_TIMEOUT = 240.0
NAME = "history"
VLLM = "ghcr.io/llm-d/llm-d-dev"
INSTALLED = f"{VLLM}:v0.2.0-rc.1"
CANARY = decode_steps({"partition": 1, "approval": True})

Handle = WorkflowHandle[Any, Any]
Scenario = Callable[[Client, SimCluster, str], Awaitable[Handle]]


def target_spec(sim: SimCluster, *changes: Change) -> RolloutSpec:
    return sim_spec(NAME, sim, small_decode_pods, *changes)


async def finished(handle: Handle, expected: Outcome) -> Handle:
    result: RolloutResult = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)
    if result.outcome != expected:
        raise RuntimeError(f"{handle.id}: {result.outcome} (expected {expected}): {result.failure}")
    return handle


async def fresh_install(client: Client, sim: SimCluster, queue: str) -> Handle:
    handle = await start_rollout(client, target_spec(sim, image(INSTALLED)), task_queue=queue)
    return await finished(handle, Outcome.SUCCEEDED)


async def gated_upgrade(client: Client, sim: SimCluster, queue: str) -> Handle:
    spec = target_spec(sim, CANARY, image(f"{VLLM}:v0.2.1"))
    handle = await start_rollout(client, spec, task_queue=queue)
    await until(
        query(handle),
        lambda p: p.gate is not None and p.state == "waiting-for-approval",
        ROLLOUT_TIMEOUT,
    )
    await handle.execute_update(RolloutWorkflow.approve, ApproveRequest(by="recorder"))
    return await finished(handle, Outcome.SUCCEEDED)


async def crash_loop_rollback(client: Client, sim: SimCluster, queue: str) -> Handle:
    bad = f"{VLLM}:v9.crash"
    sim.fault("crash", "--image", bad, "--count", "1000", "--after", "5")
    try:
        handle = await start_rollout(client, target_spec(sim, image(bad)), task_queue=queue)
        return await finished(handle, Outcome.ROLLED_BACK)
    finally:
        sim.fault("clear")


# In this order: each scenario starts from the state the one before left.
SCENARIOS: dict[str, Scenario] = {
    "real-rollout-fresh-install": fresh_install,
    "real-rollout-gated-upgrade": gated_upgrade,
    "real-rollout-crash-loop-rollback": crash_loop_rollback,
}


@contextlib.contextmanager
def worker_env() -> Any:
    """The worker's environment (HF token, helm, PATH) for the in-process activities."""
    saved = dict(os.environ)
    wanted = worker_environment()
    os.environ.update({name: wanted[name] for name in ("HF_TOKEN", "LLMD_HELM", "PATH")})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def cluster_workflow(client: Client, sim: SimCluster, queue: str) -> dict[str, Handle]:
    """A fresh install, then a teardown of everything: the cluster workflow that served both,
    and the install (its dependencies and gateway provider asked for together)."""
    spec = target_spec(sim, image(INSTALLED))
    install = await fresh_install(client, sim, queue)
    everything = TeardownInput(spec=spec, include_gateway_provider=True, include_dependencies=True)
    teardown = await start_teardown(client, everything, task_queue=queue)
    removed = await asyncio.wait_for(teardown.result(), ROLLOUT_TIMEOUT)
    if removed.outcome != Outcome.REMOVED:
        raise RuntimeError(f"teardown: {removed.outcome}: {removed.steps}")
    return {
        "real-cluster-workflow": client.get_workflow_handle(
            cluster_workflow_id(spec.target.cluster, queue)
        ),
        # Its own run: the teardown ran under the same workflow ID after it.
        "real-rollout-asked-together": client.get_workflow_handle(
            install.id, run_id=install.result_run_id
        ),
    }


async def record(directory: Path = HISTORIES, only_cluster: bool = False) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    scenarios: dict[str, Scenario] = {} if only_cluster else SCENARIOS
    written = []
    with tempfile.TemporaryDirectory() as scratch, worker_env():
        async with TemporalDevServer(Path(scratch) / "temporal.db") as server:
            client = await Client.connect(
                server.address, namespace=server.namespace,
                data_converter=pydantic_data_converter,
            )
            queue = f"record-real-{uuid.uuid4().hex[:8]}"
            async with running_sim_cluster(Path(scratch) / "sim", time_scale=TIME_SCALE) as sim:
                with ThreadPoolExecutor(max_workers=16) as executor:
                    async with Worker(
                        client, task_queue=queue, workflows=WORKFLOWS,
                        workflow_runner=workflow_runner(),
                        activities=activities(), activity_executor=executor,
                    ):
                        recorded = {
                            name: await scenario(client, sim, queue)
                            for name, scenario in scenarios.items()
                        }
                        if only_cluster:
                            recorded = await cluster_workflow(client, sim, queue)
                        for name, handle in recorded.items():
                            history = await handle.fetch_history()
                            if HF_TOKEN.encode() in history_bytes(history):
                                raise RuntimeError(f"{name}: the HF token is in the history")
                            path = directory / f"{name}.json"
                            path.write_text(history.to_json(), encoding="utf-8")
                            written.append(path)
                            print(f"{path}: {len(history.events)} events")
    return written


if __name__ == "__main__":
    asyncio.run(record(only_cluster=sys.argv[1:] == ["cluster"]))
