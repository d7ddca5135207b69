"""Scheduled upgrades: UpgradeWorkflow obeys the one-rollout-per-target guard, the maintenance
window and the spec's target; its schedule skips overlaps and pauses after a failed upgrade."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client, WorkflowExecution, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from rollouts.observing import rollout_result
from rollouts.schedules import (
    ScheduleStatus,
    create_upgrade_schedule,
    delete_upgrade_schedule,
    describe_upgrade_schedule,
    pause_upgrade_schedule,
    trigger_upgrade_schedule,
    unpause_upgrade_schedule,
)
from rollouts.starting import start_rollout
from spec.reasons import FailureReason
from spec.workflow_io import MaintenanceWindow, Outcome, SpecSource, UpgradeInput, UpgradeResult
from tests.workflows.fakes import FakeCluster
from tests.workflows.scenarios import WAIT, crash_loop_on, installed
from tests.workflows.specs import BAD_IMAGE, NEW_IMAGE, demo_spec, image
from workflows import search
from workflows.ids import rollout_workflow_id
from workflows.upgrade import UpgradeWorkflow


async def run_upgrade(client: Client, request: UpgradeInput, task_queue: str) -> UpgradeResult:
    result: UpgradeResult = await asyncio.wait_for(
        client.execute_workflow(
            UpgradeWorkflow.run, request, id=f"upgrade-test/{request.target}",
            task_queue=task_queue,
        ),
        WAIT,
    )
    return result


async def schedule_status(
    client: Client, target: str, accept: object, timeout: float = WAIT
) -> ScheduleStatus:
    """Describe the schedule until `accept(status)` holds (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await describe_upgrade_schedule(client, target)
        if accept(status):  # type: ignore[operator]
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; schedule status: {status}")
        await asyncio.sleep(0.2)


def window_now(opened: bool) -> MaintenanceWindow:
    now = datetime.now(UTC)
    start = now - timedelta(minutes=5) if opened else now + timedelta(hours=2)
    return MaintenanceWindow(start=time(start.hour, start.minute), duration=timedelta(hours=1))


async def test_scheduled_upgrade_rolls_out_under_the_targets_own_workflow_id(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    await installed(temporal_client, fake_cluster, fake_worker, "scheduled-ok")
    desired = demo_spec("scheduled-ok", image(NEW_IMAGE))
    request = UpgradeInput(
        target=desired.target_id, source=SpecSource(spec=desired),
        maintenance_window=window_now(opened=True),
    )

    result = await run_upgrade(temporal_client, request, fake_worker)

    assert not result.skipped and result.outcome == "succeeded"
    assert result.rollout_workflow_id == rollout_workflow_id(desired.target_id)
    assert result.rollout is not None and result.rollout.outcome == Outcome.SUCCEEDED
    assert fake_cluster.image("decode") == NEW_IMAGE


async def test_scheduled_upgrade_is_skipped_outside_the_maintenance_window(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    desired = demo_spec("scheduled-window", image(NEW_IMAGE))
    window = window_now(opened=False)
    request = UpgradeInput(
        target=desired.target_id, source=SpecSource(spec=desired), maintenance_window=window
    )

    result = await run_upgrade(temporal_client, request, fake_worker)

    assert result.skipped
    assert result.outcome.startswith("skipped: outside the maintenance window")
    assert fake_cluster.calls == []


async def test_scheduled_upgrade_reads_the_spec_file_and_refuses_another_targets_spec(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str, tmp_path: Path
) -> None:
    desired = demo_spec("scheduled-file")
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(desired.model_dump(mode="json")), encoding="utf-8")
    request = UpgradeInput(
        target="clustersim/other-namespace/other", source=SpecSource(path=str(path))
    )

    with pytest.raises(WorkflowFailureError) as failed:
        await run_upgrade(temporal_client, request, fake_worker)

    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == FailureReason.INVALID_SPEC.value
    assert desired.target_id in cause.message
    assert fake_cluster.calls == ["load_spec_file"]


async def test_schedule_firing_while_a_cli_rollout_runs_does_not_start_a_second_rollout(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = demo_spec("schedule-overlap")
    release = fake_cluster.hold("wait_for_model_load")
    cli = await start_rollout(temporal_client, spec, task_queue=fake_worker)
    desired = demo_spec("schedule-overlap", image(NEW_IMAGE))
    request = UpgradeInput(target=spec.target_id, source=SpecSource(spec=desired))
    await create_upgrade_schedule(
        temporal_client, request, task_queue=fake_worker, every=timedelta(days=1), paused=True
    )
    try:
        await trigger_upgrade_schedule(temporal_client, spec.target_id)
        status = await schedule_status(temporal_client, spec.target_id, lambda s: s.recent_runs)
        upgrade_id = status.recent_runs[-1][1]
        assert upgrade_id.startswith("upgrade/" + spec.target_id)
        upgrade = temporal_client.get_workflow_handle_for(UpgradeWorkflow.run, upgrade_id)
        skipped = await asyncio.wait_for(upgrade.result(), WAIT)

        assert skipped.skipped
        assert skipped.outcome == f"skipped: running {cli.id}"
        # One read by the CLI rollout's preflight, one by the upgrade (is anything to change?);
        # one preflight: no second rollout started.
        assert fake_cluster.names("read_last_known_good") == ["read_last_known_good"] * 2
        assert fake_cluster.names("preflight") == ["preflight"]
    finally:
        release.set()
        await delete_upgrade_schedule(temporal_client, spec.target_id)
    result = await asyncio.wait_for(rollout_result(cli), WAIT)
    assert result.outcome == Outcome.SUCCEEDED
    assert fake_cluster.image("decode") == spec.model_service.vllm_image


async def test_schedule_pauses_itself_after_a_failed_upgrade(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    await installed(temporal_client, fake_cluster, fake_worker, "schedule-fails")
    fake_cluster.faults.append(crash_loop_on(BAD_IMAGE))
    desired = demo_spec("schedule-fails", image(BAD_IMAGE))
    request = UpgradeInput(target=desired.target_id, source=SpecSource(spec=desired))
    await create_upgrade_schedule(
        temporal_client, request, task_queue=fake_worker, every=timedelta(days=1)
    )
    try:
        await pause_upgrade_schedule(temporal_client, desired.target_id, "testing")
        assert (await describe_upgrade_schedule(temporal_client, desired.target_id)).paused
        await unpause_upgrade_schedule(temporal_client, desired.target_id)
        await trigger_upgrade_schedule(temporal_client, desired.target_id)
        status = await schedule_status(
            temporal_client, desired.target_id, lambda s: s.recent_runs and s.paused
        )
        assert status.actions == 1
        upgrade = temporal_client.get_workflow_handle(status.recent_runs[-1][1])
        with pytest.raises(WorkflowFailureError) as failed:
            await upgrade.result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == FailureReason.CRASH_LOOP.value
    finally:
        await delete_upgrade_schedule(temporal_client, desired.target_id)
    assert fake_cluster.image("decode") == demo_spec("x").model_service.vllm_image


async def fired_upgrade(
    client: Client, target: str, firings: int
) -> WorkflowHandle[Any, UpgradeResult]:
    """Trigger the schedule and wait for firing number `firings` to finish; its handle."""
    await trigger_upgrade_schedule(client, target)
    status = await schedule_status(
        client, target, lambda s: len(s.recent_runs) >= firings and not s.running
    )
    handle = client.get_workflow_handle(status.recent_runs[-1][1], result_type=UpgradeResult)
    await asyncio.wait_for(handle.result(), WAIT)
    return handle


async def visible(client: Client, query: str, count: int) -> list[WorkflowExecution]:
    """The executions `query` finds once visibility shows `count` of them (bounded)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        found = [execution async for execution in client.list_workflows(query)]
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_a_firing_with_nothing_to_change_records_unchanged_without_a_rollout(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    await installed(temporal_client, fake_cluster, fake_worker, "schedule-unchanged")
    desired = demo_spec("schedule-unchanged", image(NEW_IMAGE))
    target = desired.target_id
    request = UpgradeInput(target=target, source=SpecSource(spec=desired))
    await create_upgrade_schedule(
        temporal_client, request, task_queue=fake_worker, every=timedelta(days=1), paused=True,
        note="nightly",
    )
    try:
        first = await fired_upgrade(temporal_client, target, 1)
        preflights = len(fake_cluster.names("preflight"))
        second = await fired_upgrade(temporal_client, target, 2)
        events = (await second.fetch_history()).events
        upgrades = await visible(
            temporal_client,
            f"WorkflowType = 'UpgradeWorkflow' AND {search.TARGET.name} = '{target}' "
            f"AND {search.OUTCOME.name} = 'unchanged'", 1,
        )
        rollouts = await visible(
            temporal_client,
            f"WorkflowType = 'RolloutWorkflow' AND {search.TARGET.name} = '{target}'", 2,
        )
    finally:
        await delete_upgrade_schedule(temporal_client, target)

    changed, unchanged = await first.result(), await second.result()
    assert (changed.outcome, changed.skipped) == ("succeeded", False)
    assert (unchanged.outcome, unchanged.skipped) == ("unchanged", True)
    assert unchanged.rollout_workflow_id is None
    assert len(events) < 30, len(events)
    assert len(fake_cluster.names("preflight")) == preflights
    # The firing is found by its target and outcome; the target's rollouts are the install and
    # the one upgrade: the unchanged firing added no row to its history.
    assert [execution.id for execution in upgrades] == [second.id]
    assert len(rollouts) == 2
    assert sum(1 for r in rollouts if (r.parent_id or "").startswith("upgrade/")) == 1
    assert fake_cluster.image("decode") == NEW_IMAGE


async def test_pause_and_unpause_keep_the_note_and_a_paused_schedule_has_no_next_run(
    temporal_client: Client, fake_worker: str
) -> None:
    desired = demo_spec("schedule-note", image(NEW_IMAGE))
    target = desired.target_id
    request = UpgradeInput(target=target, source=SpecSource(spec=desired))
    await create_upgrade_schedule(
        temporal_client, request, task_queue=fake_worker, every=timedelta(hours=1),
        note="nightly upgrades, owner: serving team",
    )
    try:
        active = await describe_upgrade_schedule(temporal_client, target)
        await pause_upgrade_schedule(temporal_client, target)
        paused = await describe_upgrade_schedule(temporal_client, target)
        await unpause_upgrade_schedule(temporal_client, target)
        unpaused = await describe_upgrade_schedule(temporal_client, target)
        await pause_upgrade_schedule(temporal_client, target, "freeze for the launch")
        frozen = await describe_upgrade_schedule(temporal_client, target)
    finally:
        await delete_upgrade_schedule(temporal_client, target)

    assert active.next_runs and not active.paused
    assert (paused.paused, paused.next_runs) == (True, [])
    assert paused.note == unpaused.note == "nightly upgrades, owner: serving team"
    assert unpaused.next_runs
    assert frozen.note == "freeze for the launch"
