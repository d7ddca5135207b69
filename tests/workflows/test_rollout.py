"""RolloutWorkflow on the real Temporal dev server, with stand-in activities over a fake cluster:
the phases, upgrades, gates and control updates, saga rollback, and the one-rollout guard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from rollouts.observing import current_details, fetch_progress, rollout_result
from rollouts.starting import TargetBusy, start_rollout
from spec.reasons import FailureReason
from spec.workflow_io import (
    ROLLOUT_PHASES,
    AbortRequest,
    ApproveRequest,
    Outcome,
    PauseRequest,
    Phase,
    ResumeRequest,
    RunState,
    StepStatus,
)
from tests.workflows.fakes import FakeCluster
from tests.workflows.scenarios import WAIT, crash_loop_on, installed, query, run_rollout, until
from tests.workflows.specs import (
    BAD_IMAGE,
    NEW_IMAGE,
    Change,
    between_roles,
    decode_replicas,
    decode_steps,
    demo_spec,
    first_install_failure,
    image,
    infra_values,
)
from workflows import search
from workflows.rollout import RolloutWorkflow

# --- install and upgrade ----------------------------------------------------------------------


async def test_fresh_install_runs_every_phase_and_lists_their_durations(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = demo_spec("fresh-install")
    handle = await start_rollout(temporal_client, spec, task_queue=fake_worker)
    result = await asyncio.wait_for(rollout_result(handle), WAIT)

    assert result.outcome == Outcome.SUCCEEDED
    assert result.workflow_id == "rollout/clustersim/llm-d-wide-ep/fresh-install"
    assert [p.phase for p in result.phases] == list(ROLLOUT_PHASES)
    assert all(p.duration_seconds >= 0 for p in result.phases)
    assert all(s.status != StepStatus.FAILED for s in result.steps)
    assert result.revision is not None and result.previous_revision is None
    assert fake_cluster.last_known_good == result.revision
    running = spec.model_service.vllm_image
    assert fake_cluster.image("decode") == fake_cluster.image("prefill") == running
    # First install: every role is applied (largest pods first), then each is waited for; no
    # partitions, no gates.
    assert fake_cluster.names("apply_model_service") == [
        "apply_model_service:shared",
        "apply_model_service:prefill@0",
        "apply_model_service:decode@0",
    ]
    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(search.TARGET) == spec.target_id
    assert attributes.get(search.OUTCOME) == "succeeded"
    assert attributes.get(search.PHASE) == "done"
    assert attributes.get(search.IMAGE) == spec.model_service.vllm_image
    assert attributes.get(search.MODEL) == spec.model_service.model_name


async def test_a_first_install_creates_its_roles_while_the_endpoint_picker_comes_up(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """Nothing serves before a first install, so its roles' pods (minutes of pulls and model
    loads) need not wait for the endpoint picker; an upgrade touches no role before it is up."""
    picker = fake_cluster.hold("wait_for_deployment")
    entered = fake_cluster.entered("wait_for_deployment")
    handle = await start_rollout(temporal_client, demo_spec("roles-early"), task_queue=fake_worker)
    await asyncio.wait_for(entered.wait(), WAIT)
    assert fake_cluster.names("apply_model_service") == [
        "apply_model_service:shared",
        "apply_model_service:prefill@0",
        "apply_model_service:decode@0",
    ]
    picker.set()
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    fake_cluster.calls.clear()

    picker = fake_cluster.hold("wait_for_deployment")
    entered = fake_cluster.entered("wait_for_deployment")
    upgrade = demo_spec("roles-early", image(NEW_IMAGE))
    handle = await start_rollout(temporal_client, upgrade, task_queue=fake_worker)
    await asyncio.wait_for(entered.wait(), WAIT)
    await asyncio.sleep(0.5)
    assert fake_cluster.names("apply_model_service") == ["apply_model_service:shared"]
    picker.set()
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED, result.failure


async def test_upgrade_with_the_same_spec_reports_every_phase_unchanged(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = await installed(temporal_client, fake_cluster, fake_worker, "same-spec")
    revisions = {name: r.revision for name, r in fake_cluster.releases.items()}

    result = await run_rollout(temporal_client, spec, fake_worker)

    assert result.outcome == Outcome.SUCCEEDED
    changed = {p.phase: p.status for p in result.phases}
    for phase in (Phase.DEPENDENCIES, Phase.GATEWAY_PROVIDER, Phase.NAMESPACE, Phase.INFRA,
                  Phase.MODEL_SERVICE, Phase.RECORD):
        assert changed[phase] == StepStatus.UNCHANGED, (phase, changed[phase])
    assert {name: r.revision for name, r in fake_cluster.releases.items()} == revisions
    assert Phase.GATE not in changed


async def test_image_upgrade_waits_at_the_approval_gate_until_approved(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    canary = decode_steps({"partition": 1, "approval": True})
    spec = await installed(
        temporal_client, fake_cluster, fake_worker, "gated-upgrade", decode_replicas(2), canary
    )
    upgrade = demo_spec("gated-upgrade", decode_replicas(2), canary, image(NEW_IMAGE))
    handle = await start_rollout(temporal_client, upgrade, task_queue=fake_worker)

    waiting = await until(
        query(handle), lambda p: p.state == RunState.WAITING_FOR_APPROVAL
    )
    assert waiting.gate is not None and waiting.gate.name == "decode/step-1"
    assert waiting.phase == Phase.GATE
    assert waiting.percent < 100
    decode = next(r for r in waiting.roles if r.role == "decode")
    assert decode.partition == 1 and decode.groups_updated == 1
    description = await handle.describe()
    assert description.typed_search_attributes.get(search.PHASE) == "gate"
    details = await current_details(handle)
    assert "gate `decode/step-1` waiting for approval" in details
    # The UI says exactly what to run, to continue or to stop.
    assert f"continue: `llmd-rollout approve {upgrade.target_id}`" in details
    assert f"stop and roll back: `llmd-rollout abort {upgrade.target_id}`" in details
    assert fake_cluster.image("prefill") == spec.model_service.vllm_image

    with pytest.raises(WorkflowUpdateFailedError) as wrong:
        await handle.execute_update(RolloutWorkflow.approve, ApproveRequest(gate="prefill/step-1"))
    assert "decode/step-1" in str(wrong.value.cause)
    approved = await handle.execute_update(
        RolloutWorkflow.approve, ApproveRequest(gate="decode/step-1", by="alice")
    )
    assert "approved by alice" in approved.message

    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED
    assert fake_cluster.image("decode") == fake_cluster.image("prefill") == NEW_IMAGE
    # Decode first, canary at partition 1, then the rest; prefill after; each step verified.
    assert fake_cluster.names("apply_model_service") == [
        "apply_model_service:shared",
        "apply_model_service:decode@1",
        "apply_model_service:decode@0",
        "apply_model_service:prefill@0",
    ]
    verified = [s.name for s in result.steps if s.phase == Phase.VERIFY]
    assert verified == ["verify/decode/partition-1", "verify/decode/partition-0", "verify"]
    gate = next(s for s in result.steps if s.phase == Phase.GATE)
    assert gate.status == StepStatus.PASSED and "alice" in gate.detail


async def test_approve_is_rejected_when_no_gate_is_waiting(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    release = fake_cluster.hold("wait_for_model_load")
    handle = await start_rollout(
        temporal_client, demo_spec("approve-nothing"), task_queue=fake_worker
    )
    await until(query(handle), lambda p: p.phase == Phase.MODEL_LOAD)

    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await handle.execute_update(RolloutWorkflow.approve, ApproveRequest())
    assert "no gate is waiting for approval" in str(rejected.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as not_paused:
        await handle.execute_update(RolloutWorkflow.resume, ResumeRequest())
    assert "not paused" in str(not_paused.value.cause)

    release.set()
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED
    with pytest.raises(RPCError, match="already completed"):
        await handle.execute_update(RolloutWorkflow.abort, AbortRequest())


async def test_between_roles_gate_pauses_then_continues_without_a_person(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    pause = between_roles(pause="1s")
    await installed(temporal_client, fake_cluster, fake_worker, "timed-gate", pause)
    handle = await start_rollout(
        temporal_client, demo_spec("timed-gate", pause, image(NEW_IMAGE)), task_queue=fake_worker
    )
    timed = await until(query(handle), lambda p: p.state == RunState.TIMED_PAUSE)
    assert timed.gate is not None and timed.gate.name == "between-roles"
    assert timed.gate.pause_until is not None

    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED
    gate = next(s for s in result.steps if s.name == "between-roles")
    assert gate.duration_seconds is not None and gate.duration_seconds >= 1.0


async def test_pause_holds_before_the_next_step_and_resume_continues(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    await installed(temporal_client, fake_cluster, fake_worker, "pause-resume")
    release = fake_cluster.hold("wait_for_model_load")
    handle = await start_rollout(
        temporal_client, demo_spec("pause-resume", image(NEW_IMAGE)), task_queue=fake_worker
    )
    await until(query(handle), lambda p: p.step == "model-load/decode/partition-0")

    paused = await handle.execute_update(RolloutWorkflow.pause, PauseRequest(by="bob"))
    assert "holds before its next step" in paused.message
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(RolloutWorkflow.pause, PauseRequest())
    applied = len(fake_cluster.names("apply_model_service"))
    release.set()
    holding = await until(query(handle), lambda p: p.state == RunState.PAUSED)
    assert holding.step == "paused"
    await asyncio.sleep(0.5)
    assert len(fake_cluster.names("apply_model_service")) == applied, "moved on while paused"

    await handle.execute_update(RolloutWorkflow.resume, ResumeRequest(by="bob"))
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED
    assert fake_cluster.image("prefill") == NEW_IMAGE


async def test_a_longer_model_load_adds_no_events_to_the_history(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    await installed(temporal_client, fake_cluster, fake_worker, "load-length")
    events = []
    for version, seconds in (("v0.2.1", 0.5), ("v0.2.2", 2.5)):
        fake_cluster.load_seconds = seconds
        upgrade = demo_spec("load-length", image(f"ghcr.io/llm-d/llm-d-dev:{version}"))
        handle = await start_rollout(temporal_client, upgrade, task_queue=fake_worker)
        await asyncio.wait_for(handle.result(), WAIT)
        events.append(len((await handle.fetch_history()).events))

    # Heartbeats (five a second here) are not events, and nothing in the workflow polls.
    assert events[0] == events[1]
    assert events[1] < 300


# --- rollback ---------------------------------------------------------------------------------


async def test_failed_model_load_rolls_back_newest_first_and_verifies_the_old_version(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    old = await installed(temporal_client, fake_cluster, fake_worker, "crash-loop")
    infra_before = fake_cluster.helm_revision("infra-wide-ep")
    assert infra_before is not None
    lkg = fake_cluster.last_known_good
    fake_cluster.faults.append(crash_loop_on(BAD_IMAGE))
    upgrade = demo_spec("crash-loop", image(BAD_IMAGE), infra_values(replicas=2))

    result = await run_rollout(temporal_client, upgrade, fake_worker)

    assert result.outcome == Outcome.ROLLED_BACK
    assert result.failure is not None
    assert result.failure.reason == FailureReason.CRASH_LOOP
    assert result.failure.step == "model-load/decode/partition-0"
    assert "CUDA out of memory" in str(result.failure.evidence["log_lines"])
    assert result.rollback is not None and result.rollback.verified
    assert result.rollback.restored_revision == lkg
    assert [c.undoes for c in result.rollback.compensations] == ["model-service", "infra"]
    assert [c.status for c in result.rollback.compensations] == ["succeeded", "succeeded"]
    # The old version runs again: helm rolled back to its old content, objects restored.
    assert fake_cluster.image("decode") == old.model_service.vllm_image
    assert fake_cluster.names("helm_rollback") == [f"helm_rollback:infra-wide-ep->{infra_before}"]
    assert fake_cluster.last_known_good == lkg
    undo = fake_cluster.calls.index("restore_snapshot:" + str(lkg))
    assert fake_cluster.calls.index(f"helm_rollback:infra-wide-ep->{infra_before}") > undo
    assert fake_cluster.calls[-1] == "verify_gateway"
    assert any(p.phase == Phase.ROLLBACK for p in result.phases)
    # The finished run's details state how it ended, not the "rolling back" of its last step.
    handle = temporal_client.get_workflow_handle(result.workflow_id)
    details = await current_details(handle)
    assert "finished: **rolled-back**" in details and "rolling back" not in details
    assert f"rollback: restored {lkg}, verified" in details
    assert "failed: CrashLoop in model-load at `model-load/decode/partition-0`" in details


async def test_failed_verification_rolls_back_with_the_gateway_answer_as_evidence(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    old = await installed(temporal_client, fake_cluster, fake_worker, "verify-503")
    fake_cluster.unservable_image = BAD_IMAGE

    upgrade = demo_spec("verify-503", image(BAD_IMAGE))
    result = await run_rollout(temporal_client, upgrade, fake_worker)

    assert result.outcome == Outcome.ROLLED_BACK
    assert result.failure is not None
    assert result.failure.reason == FailureReason.VERIFICATION_FAILED
    assert "503" in result.failure.message
    assert result.failure.evidence["checks"][0]["response"] == "no healthy upstream"
    assert result.rollback is not None and result.rollback.verified
    assert fake_cluster.image("prefill") == old.model_service.vllm_image


def renamed(release: str, model: str, kubeconfig: str) -> Change:
    """A new release name (so new LWS names), a new model name, and the worker's kubeconfig
    at a new path."""

    def change(document: dict[str, Any]) -> None:
        document["modelService"]["releaseName"] = release
        document["modelService"]["modelName"] = model
        document["target"]["kubeconfig"] = kubeconfig

    return change


async def test_a_rollback_waits_for_and_verifies_the_old_version_under_its_own_names(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """The spec stored with the last-known-good snapshot names the old version: after the
    restore, the waits look for the old LeaderWorkerSets and verification asks for the old
    model, reached through the current target (the worker's kubeconfig now)."""
    old = await installed(
        temporal_client, fake_cluster, fake_worker, "renamed",
        renamed("ms-old", "old-org/old-model", "/etc/old/kubeconfig"),
    )
    fake_cluster.faults.append(crash_loop_on(BAD_IMAGE))
    upgrade = demo_spec(
        "renamed", image(BAD_IMAGE),
        renamed("ms-new", "new-org/new-model", "/etc/new/kubeconfig"),
    )

    result = await run_rollout(temporal_client, upgrade, fake_worker)

    assert result.outcome == Outcome.ROLLED_BACK, result.rollback
    assert result.rollback is not None and result.rollback.verified
    restored = next(
        i for i, (name, _) in enumerate(fake_cluster.inputs) if name == "restore_snapshot"
    )
    after = fake_cluster.inputs[restored + 1:]
    waited = {arg.name for name, arg in after if name == "wait_for_lws_rollout"}
    assert waited == {old.model_service.lws_name(role) for role in ("prefill", "decode")}
    loaded = [arg.spec for name, arg in after if name == "wait_for_model_load"]
    verified = [arg.spec for name, arg in after if name == "verify_gateway"]
    assert len(verified) == 1 and len(loaded) == 2
    for spec in (*loaded, *verified):
        assert spec.model_service.model_name == "old-org/old-model"
        assert spec.model_service.release_name == "ms-old"
        assert spec.target == upgrade.target
    targets = {arg.target.kubeconfig for name, arg in after if name == "wait_for_lws_rollout"}
    assert targets == {"/etc/new/kubeconfig"}


async def test_abort_during_model_load_rolls_back(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    old = await installed(temporal_client, fake_cluster, fake_worker, "abort-load")
    loading = fake_cluster.entered("wait_for_model_load")
    release = fake_cluster.hold("wait_for_model_load")
    handle = await start_rollout(
        temporal_client, demo_spec("abort-load", image(NEW_IMAGE)), task_queue=fake_worker
    )
    await asyncio.wait_for(loading.wait(), WAIT)
    live = await until(
        lambda: fetch_progress(handle),
        lambda p: bool(p.live) and any(r.load_percent for r in p.roles),
    )
    assert live.live is not None and "wait_for_model_load" in live.live

    aborted = await handle.execute_update(
        RolloutWorkflow.abort, AbortRequest(by="carol", reason="wrong image")
    )
    assert "rolling back" in aborted.message
    fake_cluster.holds.clear()
    release.set()
    result = await asyncio.wait_for(rollout_result(handle), WAIT)

    assert result.outcome == Outcome.ROLLED_BACK
    assert result.failure is not None and result.failure.reason == FailureReason.ABORTED
    assert "carol" in result.failure.message and "wrong image" in result.failure.message
    assert result.rollback is not None and result.rollback.verified
    assert fake_cluster.image("decode") == old.model_service.vllm_image
    cancelled = [s for s in result.steps if s.status == StepStatus.CANCELLED]
    assert [s.name for s in cancelled] == ["model-load/decode/partition-0"]


async def test_first_install_failure_is_kept_for_inspection_when_the_policy_says_keep(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    fake_cluster.faults.append(crash_loop_on(NEW_IMAGE))
    spec = demo_spec("first-keep", image(NEW_IMAGE), first_install_failure("keep"))

    result = await run_rollout(temporal_client, spec, fake_worker)

    assert result.outcome == Outcome.KEPT_FOR_INSPECTION
    assert result.rollback is None
    assert fake_cluster.image("decode") == NEW_IMAGE
    assert "infra-wide-ep" in fake_cluster.releases
    assert not fake_cluster.names("helm_uninstall") and not fake_cluster.names("delete_objects")


async def test_a_step_out_of_budget_says_what_its_last_heartbeat_was_doing(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    # A step that heartbeats but never ends is timed out by Temporal; the report says what it
    # was busy with (the fake beats "<activity> held by the test" as a wait beats its detail).
    held = fake_cluster.hold("ensure_namespace")

    def quick_namespace_budget(document: dict[str, Any]) -> None:
        document["budgets"]["phaseTimeouts"]["namespace"] = "2s"

    try:
        result = await run_rollout(
            temporal_client, demo_spec("namespace-budget", quick_namespace_budget), fake_worker
        )
    finally:
        held.set()

    assert result.failure is not None
    assert result.failure.reason == FailureReason.ROLLOUT_TIMEOUT
    assert result.failure.step == "namespace"
    assert result.failure.message.endswith(
        "timeout); its last heartbeat: ensure_namespace held by the test"
    ), result.failure.message
    assert result.failure.evidence["lastStep"] == "ensure_namespace held by the test"


async def test_first_install_failure_uninstalls_what_it_installed_when_the_policy_says_so(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    fake_cluster.faults.append(crash_loop_on(NEW_IMAGE))
    spec = demo_spec("first-uninstall", image(NEW_IMAGE), first_install_failure("uninstall"))

    result = await run_rollout(temporal_client, spec, fake_worker)

    assert result.outcome == Outcome.ROLLED_BACK
    assert result.rollback is not None
    undone = {c.undoes: c.status for c in result.rollback.compensations}
    assert undone == {
        "model-service": "succeeded",
        "infra": "succeeded",
        "gateway-provider/istiod": "kept",
        "lws-controller": "kept",
    }
    assert fake_cluster.model_service is None
    assert "infra-wide-ep" not in fake_cluster.releases
    # Shared dependencies stay: other tenants may use them; teardown removes them when asked.
    assert "istiod" in fake_cluster.releases and "lws" in fake_cluster.releases
    assert result.rollback.restored_revision is None and not result.rollback.verified


async def test_insufficient_capacity_is_refused_before_any_change(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    fake_cluster.capacity_fits = False

    result = await run_rollout(temporal_client, demo_spec("no-room"), fake_worker)

    assert result.outcome == Outcome.FAILED
    assert result.failure is not None
    assert result.failure.reason == FailureReason.INSUFFICIENT_CAPACITY
    assert "plan" in result.failure.evidence
    assert fake_cluster.calls == ["read_last_known_good", "preflight"]


# --- one rollout per target ---------------------------------------------------------------------


async def test_a_second_start_for_the_same_target_is_refused_with_the_running_id(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    release = fake_cluster.hold("wait_for_model_load")
    spec = demo_spec("one-at-a-time")
    first = await start_rollout(temporal_client, spec, task_queue=fake_worker)

    with pytest.raises(TargetBusy) as busy:
        await start_rollout(temporal_client, spec, task_queue=fake_worker)
    assert busy.value.workflow_id == first.id == "rollout/" + spec.target_id
    assert busy.value.run_id == first.result_run_id
    assert first.id in str(busy.value)

    release.set()
    assert (await asyncio.wait_for(rollout_result(first), WAIT)).outcome == Outcome.SUCCEEDED
    again = await start_rollout(temporal_client, spec, task_queue=fake_worker)
    assert (await asyncio.wait_for(rollout_result(again), WAIT)).outcome == Outcome.SUCCEEDED


async def test_search_attribute_keys_match_the_registered_names() -> None:
    from embedded.search_attributes import SEARCH_ATTRIBUTES

    assert {key.name: "Keyword" for key in search.KEYS} == dict(SEARCH_ATTRIBUTES)
    assert all(isinstance(key, SearchAttributeKey) for key in search.KEYS)
