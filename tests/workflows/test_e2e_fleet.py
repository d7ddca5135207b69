"""End to end: a fleet of three clusters (three clustersim processes, three kubeconfigs) rolled
out by FleetWorkflow with the real activities, in waves [a] then [b, c] (maxParallel 1).

The first fleet installs every target wave by wave behind an approval gate between the waves.
The second upgrades them with a regression staged on cluster b only (a crash-looping image there):
a upgrades, b fails and rolls itself back, the fleet stops in wave 2, `rollbackAll` returns a to
its previous revision, and c is never touched (no new rollout run, the same images).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client

from cli.commands.fleet import render_fleet
from rollouts.fleets import fleet_progress, fleet_result, start_fleet
from spec.fleet import load_fleet
from spec.fleet_io import FleetOutcome, FleetProgress, TargetState, WaveState
from spec.loader import resolve_local_paths
from spec.workflow_io import ApproveRequest
from tests.simcluster import SimCluster, running_sim_cluster
from tests.workflows.e2e import MODEL_LOAD_BUDGET, TIME_SCALE, small_decode_pods
from tests.workflows.specs import EXAMPLES
from tests.workflows.test_e2e_upgrade import vllm_images
from workflows.fleet import FleetWorkflow
from workflows.ids import rollout_workflow_id

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.long]

FLEET_TIMEOUT = 420.0
NAME = "fleet-e2e"
NAMESPACE = "llm-d-wide-ep"
CLUSTERS = ("a", "b", "c")
VLLM = "ghcr.io/llm-d/llm-d-dev"
OLD = f"{VLLM}:v0.2.0-rc.1"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def sims(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, SimCluster]]:
    """Three clustersim processes, each in its own workdir with its own kubeconfig."""
    async with contextlib.AsyncExitStack() as stack:
        started = {
            name: await stack.enter_async_context(
                running_sim_cluster(
                    tmp_path_factory.mktemp(f"sim-fleet-{name}"), time_scale=TIME_SCALE
                )
            )
            for name in CLUSTERS
        }
        yield started


def fleet_file(
    folder: Path, sims: dict[str, SimCluster], image: str, **fleet: Any
) -> Path:
    """A Fleet document: the demo rollout (small decode pods) on a, b, c in waves [a], [b, c]."""
    rollout = yaml.safe_load((EXAMPLES / "demo.yaml").read_text(encoding="utf-8"))
    resolve_local_paths(rollout, EXAMPLES)
    rollout["metadata"]["name"] = NAME
    rollout["budgets"]["modelLoad"] = MODEL_LOAD_BUDGET
    rollout["modelService"]["vllmImage"] = image
    del rollout["target"]
    small_decode_pods(rollout)
    document = {
        "apiVersion": "llmd-rollout.llm-d.ai/v1alpha1",
        "kind": "Fleet",
        "metadata": {"name": NAME},
        "rollout": rollout,
        "targets": [
            {"name": name, "cluster": name, "namespace": NAMESPACE,
             "kubeconfig": str(sim.kubeconfig)}
            for name, sim in sims.items()
        ],
        "waves": [
            {"name": "canary", "targets": ["a"]},
            {"name": "rest", "targets": ["b", "c"], "maxParallel": 1},
        ],
        **fleet,
    }
    path = folder / f"fleet-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def timeline(progress: FleetProgress) -> list[str]:
    return [f"{e.wave or '-'}/{e.target or '-'}: {e.event}" for e in progress.timeline]


def print_timeline(title: str, progress: FleetProgress) -> None:
    """The fleet as `status fleet/NAME` shows it, timeline included (visible with -s)."""
    print(f"\n--- {title}")
    print("\n".join(render_fleet(progress)))


async def rollout_run_id(client: Client, target: str) -> str:
    description = await client.get_workflow_handle(rollout_workflow_id(target)).describe()
    return description.run_id


async def wait_for_gate(handle: Any) -> FleetProgress:
    deadline = asyncio.get_running_loop().time() + FLEET_TIMEOUT
    while True:
        progress = await fleet_progress(handle)
        if progress.gate is not None or progress.outcome != FleetOutcome.RUNNING:
            return progress
        assert asyncio.get_running_loop().time() < deadline, progress
        await asyncio.sleep(0.5)


async def test_fleet_installs_wave_by_wave_then_a_regression_on_b_stops_it_in_wave_2(
    client: Client, real_worker: str, sims: dict[str, SimCluster], tmp_path: Path
) -> None:
    # --- success path: [a], approval gate, then [b, c] one at a time --------------------------
    plan = load_fleet(
        fleet_file(tmp_path, sims, OLD, betweenWaves={"approval": True}, onFailure="rollbackAll")
    )
    handle = await start_fleet(client, plan, task_queue=real_worker)
    waiting = await wait_for_gate(handle)
    assert waiting.gate is not None and waiting.gate.name == "before/rest", waiting
    assert waiting.target("a").state == TargetState.SUCCEEDED
    assert {waiting.target(n).state for n in ("b", "c")} == {TargetState.PENDING}
    assert vllm_images(sims["b"], NAMESPACE) == {}, "wave 2 started before its gate"
    await handle.execute_update(FleetWorkflow.approve, ApproveRequest(by="e2e"))
    installed = await asyncio.wait_for(fleet_result(handle), FLEET_TIMEOUT)
    print_timeline("fleet install", installed)

    assert installed.outcome == FleetOutcome.SUCCEEDED, installed.diagnosis
    assert [w.state for w in installed.waves] == [WaveState.SUCCEEDED, WaveState.SUCCEEDED]
    events = timeline(installed)
    order = [events.index(f"{wave}/{t}: {state}") for wave, t, state in (
        ("canary", "a", "succeeded: revision " + (installed.target("a").revision or "")),
        ("rest", "b", f"running: {rollout_workflow_id(installed.target('b').target)}"),
        ("rest", "b", "succeeded: revision " + (installed.target("b").revision or "")),
        ("rest", "c", f"running: {rollout_workflow_id(installed.target('c').target)}"),
    )]
    assert order == sorted(order), events
    for name in CLUSTERS:
        assert set(vllm_images(sims[name], NAMESPACE).values()) == {OLD}
    c_run = await rollout_run_id(client, installed.target("c").target)
    c_images = vllm_images(sims["c"], NAMESPACE)

    # --- a regression staged on b only: wave 2 fails, rollbackAll returns a, c untouched -------
    new = f"{VLLM}:v0.3.{uuid.uuid4().hex[:6]}"
    sims["b"].fault("crash", "--image", new, "--count", "1000", "--after", "5")
    try:
        failing = load_fleet(fleet_file(tmp_path, sims, new, onFailure="rollbackAll"))
        result = await asyncio.wait_for(
            fleet_result(await start_fleet(client, failing, task_queue=real_worker)),
            FLEET_TIMEOUT,
        )
    finally:
        sims["b"].fault("clear")
    print_timeline("fleet upgrade with a regression on b", result)

    assert result.outcome == FleetOutcome.FAILED, result
    assert result.diagnosis == "b failed in wave rest"
    assert result.target("a").state == TargetState.ROLLED_BACK, result.target("a")
    assert result.target("a").revision == installed.target("a").revision
    assert result.target("b").state == TargetState.FAILED
    assert "rolled-back" in result.target("b").detail
    assert result.target("c").state == TargetState.NOT_STARTED
    assert [w.state for w in result.waves] == [WaveState.ROLLED_BACK, WaveState.FAILED]
    for name in ("a", "b"):
        assert set(vllm_images(sims[name], NAMESPACE).values()) == {OLD}, name
    assert await rollout_run_id(client, result.target("c").target) == c_run
    assert vllm_images(sims["c"], NAMESPACE) == c_images
