"""FleetWorkflow on the real Temporal dev server with stand-in activities (one fake cluster):
the one-rollout-per-target rule across a fleet, the approval gate's validator, and an abort at the
gate that returns the first wave by `rollbackAll`, `rollbackWave` returning only the failed
wave's peers, and the fleet's schedule. The three-cluster
path is test_e2e_fleet.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from rollouts.fleets import (
    create_fleet_schedule,
    fleet_handle,
    fleet_progress,
    fleet_result,
    start_fleet,
)
from rollouts.observing import rollout_result
from rollouts.schedules import (
    delete_upgrade_schedule,
    describe_upgrade_schedule,
    trigger_upgrade_schedule,
)
from rollouts.starting import start_rollout
from spec.fleet_io import FleetOutcome, FleetUpgradeResult, TargetState, WaveState
from spec.reasons import FailureReason
from spec.rollout import Gate
from spec.workflow_io import AbortRequest, ApproveRequest, Outcome
from tests.workflows.fakes import FakeCluster, Fault
from tests.workflows.scenarios import WAIT, crash_loop_on, installed
from tests.workflows.specs import BAD_IMAGE, NEW_IMAGE, demo_spec, fleet_of, image, on_cluster
from workflows.fleet import FleetWorkflow


async def test_a_target_busy_with_its_own_rollout_fails_the_fleet_and_is_left_alone(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    release = fake_cluster.hold("wait_for_model_load")
    spec = demo_spec("fleet-busy")
    running = await start_rollout(temporal_client, spec, task_queue=fake_worker)
    fleet = fleet_of("fleet-busy", [[("a", spec)]])

    result = await asyncio.wait_for(
        fleet_result(await start_fleet(temporal_client, fleet, task_queue=fake_worker)), WAIT
    )

    assert result.outcome == FleetOutcome.FAILED
    assert result.target("a").state == TargetState.FAILED
    assert result.target("a").detail == f"busy: {running.id} is already running"
    release.set()
    finished = await asyncio.wait_for(rollout_result(running), WAIT)
    assert finished.outcome == Outcome.SUCCEEDED
    assert (await running.describe()).run_id == running.result_run_id


async def test_abort_at_the_gate_returns_the_first_wave_and_never_starts_the_second(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    old = await installed(temporal_client, fake_cluster, fake_worker, "fleet-abort")
    new = demo_spec("fleet-abort", image(NEW_IMAGE))
    other = demo_spec("fleet-abort", image(NEW_IMAGE), on_cluster("elsewhere"))
    fleet = fleet_of("fleet-abort", [[("a", new)], [("b", other)]],
                 between_waves=Gate(approval=True), on_failure="rollbackAll")
    handle = await start_fleet(temporal_client, fleet, task_queue=fake_worker)

    deadline = asyncio.get_running_loop().time() + WAIT
    while (progress := await fleet_progress(handle)).gate is None:
        assert asyncio.get_running_loop().time() < deadline, progress
        await asyncio.sleep(0.1)
    assert progress.target("a").state == TargetState.SUCCEEDED
    with pytest.raises(WorkflowUpdateFailedError) as wrong:
        await handle.execute_update(FleetWorkflow.approve, ApproveRequest(gate="another"))
    assert "'before/wave-2' is" in str(wrong.value.cause)
    await handle.execute_update(FleetWorkflow.abort, AbortRequest(by="test", reason="enough"))
    result = await asyncio.wait_for(fleet_result(handle), WAIT)

    assert result.outcome == FleetOutcome.ABORTED
    assert result.diagnosis == "aborted by test: enough"
    assert result.target("a").state == TargetState.ROLLED_BACK
    assert result.target("a").revision == result.target("a").previous_revision
    assert fake_cluster.model_service is not None
    assert fake_cluster.image("decode") == old.model_service.vllm_image
    assert result.target("b").state == TargetState.PENDING
    assert [w.state for w in result.waves] == [WaveState.ROLLED_BACK, WaveState.SKIPPED]


async def test_a_scheduled_fleet_starts_under_its_own_id_and_skips_while_it_runs(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    release = fake_cluster.hold("wait_for_model_load")
    fleet = fleet_of("fleet-sched", [[("a", demo_spec("fleet-sched"))]])
    running = await start_fleet(temporal_client, fleet, task_queue=fake_worker)
    schedule = await create_fleet_schedule(
        temporal_client, fleet, task_queue=fake_worker, every=timedelta(days=1)
    )
    try:
        assert schedule.id == "upgrade/fleet/fleet-sched"
        await trigger_upgrade_schedule(temporal_client, "fleet/fleet-sched")
        skipped = await firing_result(temporal_client, 1)
        assert skipped.skipped and skipped.outcome == "skipped: running fleet/fleet-sched"

        release.set()
        assert (await asyncio.wait_for(fleet_result(running), WAIT)).outcome == (
            FleetOutcome.SUCCEEDED
        )
        await trigger_upgrade_schedule(temporal_client, "fleet/fleet-sched")
        fired = await firing_result(temporal_client, 2)
        assert (fired.skipped, fired.outcome) == (False, "succeeded")
        assert fired.fleet_workflow_id == running.id
        latest = await fleet_result(fleet_handle(temporal_client, "fleet-sched"))
        assert latest.timeline[0].event.startswith("fleet started by schedule")
    finally:
        await delete_upgrade_schedule(temporal_client, "fleet/fleet-sched")


async def firing_result(client: Client, count: int) -> FleetUpgradeResult:
    """The result of the schedule's `count`-th firing (bounded wait)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while len((status := await describe_upgrade_schedule(client, "fleet/fleet-sched"))
              .recent_runs) < count:
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.2)
    handle = client.get_workflow_handle(
        status.recent_runs[count - 1][1], result_type=FleetUpgradeResult
    )
    return await asyncio.wait_for(handle.result(), WAIT)


async def test_rollback_wave_returns_the_failed_waves_peers_and_leaves_earlier_waves(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    await installed(temporal_client, fake_cluster, fake_worker, "fleet-wave")
    first = demo_spec("fleet-wave", image(NEW_IMAGE), on_cluster("first"))
    peer = demo_spec("fleet-wave", image(NEW_IMAGE))
    broken = demo_spec("fleet-wave", image(BAD_IMAGE), on_cluster("broken"))
    fake_cluster.faults.append(crash_loop_on(BAD_IMAGE))
    fleet = fleet_of("fleet-wave", [[("first", first)], [("peer", peer), ("broken", broken)]])

    result = await asyncio.wait_for(
        fleet_result(await start_fleet(temporal_client, fleet, task_queue=fake_worker)), WAIT
    )

    assert result.outcome == FleetOutcome.FAILED
    assert result.diagnosis == "broken failed in wave wave-2"
    assert result.target("broken").detail == "CrashLoop (its rollout: rolled-back)"
    assert result.target("peer").state == TargetState.ROLLED_BACK
    assert result.target("first").state == TargetState.SUCCEEDED
    assert [w.state for w in result.waves] == [WaveState.SUCCEEDED, WaveState.ROLLED_BACK]
    first_runs = [
        e async for e in temporal_client.list_workflows(
            f"WorkflowId = 'rollout/{first.target_id}'"
        )
    ]
    assert len(first_runs) == 1, "rollbackWave started a rollout in an earlier wave"


async def test_a_target_whose_record_cannot_be_read_is_not_started_and_fails_the_fleet(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    fake_cluster.faults.append(Fault(
        "read_last_known_good", FailureReason.CLUSTER_UNREACHABLE, "connection refused",
        when=lambda cluster, arg: arg.target.cluster == "gone",
    ))
    fleet = fleet_of("fleet-gone", [[("gone", demo_spec("fleet-gone", on_cluster("gone")))]])

    result = await asyncio.wait_for(
        fleet_result(await start_fleet(temporal_client, fleet, task_queue=fake_worker)), WAIT
    )

    assert result.outcome == FleetOutcome.FAILED
    assert result.target("gone").state == TargetState.FAILED
    assert "connection refused" in result.target("gone").detail
    assert fake_cluster.calls == ["read_last_known_good"]
