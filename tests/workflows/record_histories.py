"""Record the workflow histories the replay tests replay (tests/histories/*.json).

    .venv/bin/python -m tests.workflows.record_histories [SCENARIO ...]

Runs each scenario once on a fresh embedded Temporal dev server with the stand-in activities and
writes its history. Re-record only on purpose: a stored history stands for the workflows already
running in production when the code changes; a change that fails to replay them must go behind
`workflow.patched` instead (see tests/workflows/test_replay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from embedded.temporal import TemporalDevServer
from rollouts.fleets import start_fleet
from rollouts.starting import start_rollout, start_teardown
from spec.fleet_io import FleetUpgradeInput
from spec.rollout import Gate
from spec.workflow_io import ApproveRequest, SpecSource, TeardownInput, UpgradeInput
from tests.workflows.fakes import FakeCluster
from tests.workflows.scenarios import WAIT, crash_loop_on, installed, query, until
from tests.workflows.specs import (
    BAD_IMAGE,
    NEW_IMAGE,
    decode_replicas,
    decode_steps,
    demo_spec,
    fleet_of,
    image,
    on_cluster,
)
from workflows.fleet import FleetWorkflow
from workflows.fleet_schedule import FleetUpgradeWorkflow
from workflows.registry import WORKFLOWS, workflow_runner
from workflows.rollout import RolloutWorkflow
from workflows.upgrade import UpgradeWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"

Scenario = Callable[[Client, FakeCluster, str], Awaitable[WorkflowHandle]]  # type: ignore[type-arg]


async def fresh_install(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    handle = await start_rollout(client, demo_spec("history-install"), task_queue=queue)
    await handle.result()
    return handle


async def gated_upgrade(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    canary = decode_steps({"partition": 1, "approval": True})
    await installed(client, cluster, queue, "history-gated", decode_replicas(2), canary)
    spec = demo_spec("history-gated", decode_replicas(2), canary, image(NEW_IMAGE))
    handle = await start_rollout(client, spec, task_queue=queue)
    await until(query(handle), lambda p: p.gate is not None and p.state == "waiting-for-approval")
    await handle.execute_update(RolloutWorkflow.approve, ApproveRequest(by="recorder"))
    await handle.result()
    return handle


async def crash_loop_rollback(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    await installed(client, cluster, queue, "history-crash")
    cluster.faults.append(crash_loop_on(BAD_IMAGE))
    handle = await start_rollout(
        client, demo_spec("history-crash", image(BAD_IMAGE)), task_queue=queue
    )
    with contextlib.suppress(Exception):
        await handle.result()
    return handle


async def abort_during_load(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    from spec.workflow_io import AbortRequest

    await installed(client, cluster, queue, "history-abort")
    loading = cluster.entered("wait_for_model_load")
    release = cluster.hold("wait_for_model_load")
    handle = await start_rollout(
        client, demo_spec("history-abort", image(NEW_IMAGE)), task_queue=queue
    )
    await asyncio.wait_for(loading.wait(), WAIT)
    await handle.execute_update(RolloutWorkflow.abort, AbortRequest(by="recorder"))
    cluster.holds.clear()
    release.set()
    with contextlib.suppress(Exception):
        await handle.result()
    return handle


async def scheduled_upgrade(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    await installed(client, cluster, queue, "history-upgrade")
    desired = demo_spec("history-upgrade", image(NEW_IMAGE))
    request = UpgradeInput(target=desired.target_id, source=SpecSource(spec=desired))
    handle = await client.start_workflow(
        UpgradeWorkflow.run, request, id=f"upgrade/{desired.target_id}", task_queue=queue
    )
    await handle.result()
    return handle


async def unchanged_upgrade(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    """A firing whose desired spec is the last-known-good one: `unchanged`, no rollout."""
    spec = await installed(client, cluster, queue, "history-unchanged")
    request = UpgradeInput(target=spec.target_id, source=SpecSource(spec=spec))
    handle = await client.start_workflow(
        UpgradeWorkflow.run, request, id=f"upgrade/{spec.target_id}", task_queue=queue
    )
    await handle.result()
    return handle


async def teardown(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    spec = await installed(client, cluster, queue, "history-teardown")
    handle = await start_teardown(client, TeardownInput(spec=spec), task_queue=queue)
    await handle.result()
    return handle


async def fleet_rollback_all(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    """Wave 1 upgrades, the gate is approved, wave 2's first target crash-loops: the fleet stops,
    rollbackAll returns wave 1's target, wave 2's second target is never started."""
    await installed(client, cluster, queue, "history-fleet")
    cluster.faults.append(crash_loop_on(BAD_IMAGE))
    fleet = fleet_of(
        "history-fleet",
        [[("a", demo_spec("history-fleet", image(NEW_IMAGE)))],
         [("b", demo_spec("history-fleet", image(BAD_IMAGE), on_cluster("b"))),
          ("c", demo_spec("history-fleet", image(NEW_IMAGE), on_cluster("c")))]],
        between_waves=Gate(approval=True), on_failure="rollbackAll",
    )
    handle = await start_fleet(client, fleet, task_queue=queue)
    while (await handle.query(FleetWorkflow.progress)).gate is None:
        await asyncio.sleep(0.1)
    await handle.execute_update(FleetWorkflow.approve, ApproveRequest(by="recorder"))
    with contextlib.suppress(Exception):
        await handle.result()
    return handle


async def fleet_scheduled(client: Client, cluster: FakeCluster, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
    fleet = fleet_of("history-fleet-scheduled", [[("a", demo_spec("history-fleet-scheduled"))]])
    handle = await client.start_workflow(
        FleetUpgradeWorkflow.run, FleetUpgradeInput(fleet=fleet),
        id="upgrade/fleet/history-fleet-scheduled", task_queue=queue,
    )
    await handle.result()
    return handle


SCENARIOS: dict[str, Scenario] = {
    "rollout-fresh-install": fresh_install,
    "rollout-gated-upgrade": gated_upgrade,
    "rollout-crash-loop-rollback": crash_loop_rollback,
    "rollout-abort-during-model-load": abort_during_load,
    "upgrade-scheduled": scheduled_upgrade,
    "upgrade-unchanged": unchanged_upgrade,
    "teardown": teardown,
    "fleet-rollback-all": fleet_rollback_all,
    "fleet-scheduled": fleet_scheduled,
}


async def record(directory: Path = HISTORIES, only: Sequence[str] = ()) -> list[Path]:
    """Record every scenario, or the ones named in `only` (a new scenario, without
    re-recording the histories that stand for runs already in flight)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        async with TemporalDevServer(Path(scratch) / "temporal.db") as server:
            client = await Client.connect(
                server.address, namespace=server.namespace,
                data_converter=pydantic_data_converter,
            )
            for name, scenario in SCENARIOS.items():
                if only and name not in only:
                    continue
                cluster = FakeCluster()
                queue = f"record-{uuid.uuid4().hex[:8]}"
                async with Worker(
                    client, task_queue=queue, workflows=WORKFLOWS,
                    workflow_runner=workflow_runner(),
                    activities=cluster.activities(),
                ):
                    handle = await asyncio.wait_for(scenario(client, cluster, queue), WAIT)
                history = await handle.fetch_history()
                path = directory / f"{name}.json"
                path.write_text(history.to_json(), encoding="utf-8")
                written.append(path)
                print(f"{path}: {len(history.events)} events")
    return written


if __name__ == "__main__":
    asyncio.run(record(only=sys.argv[1:]))
