"""The model-service plan: which roles change, in which partition steps, behind which gates."""

from __future__ import annotations

from typing import Any

from tests.workflows.specs import (
    NEW_IMAGE,
    between_roles,
    decode_replicas,
    decode_steps,
    demo_spec,
    image,
)
from workflows.plan import plan_rollout

CANARY = decode_steps({"partition": 1, "approval": True})


def test_first_install_creates_every_role_largest_pods_first_without_partitions_or_gates(
) -> None:
    spec = demo_spec("plan", decode_replicas(2), CANARY, between_roles(approval=True))
    plan = plan_rollout(spec, None, None)
    assert plan.first_install
    # 8-GPU prefill pods before 4-GPU decode pods, whatever the upgrade order says.
    assert [(s.role, s.partition, s.gate) for s in plan.steps] == [
        ("prefill", None, None), ("decode", None, None),
    ]
    assert plan.between_roles is None
    assert not any(s.verify_after for s in plan.steps)


def test_upgrade_rolls_decode_through_its_canary_then_prefill_verifying_between_steps() -> None:
    old = demo_spec("plan", decode_replicas(2), CANARY)
    new = demo_spec("plan", decode_replicas(2), CANARY, image(NEW_IMAGE))
    plan = plan_rollout(new, "old-revision", old)
    assert [s.name for s in plan.steps] == [
        "decode/partition-1", "decode/partition-0", "prefill/partition-0",
    ]
    assert [s.gate_name for s in plan.steps] == ["decode/step-1", "", ""]
    assert [s.verify_after for s in plan.steps] == [True, True, False]
    assert plan.changed_roles == ("decode", "prefill")


def test_an_unchanged_role_is_reapplied_once_without_gates() -> None:
    old = demo_spec("plan", decode_replicas(2), CANARY)
    new = demo_spec("plan", decode_replicas(2), CANARY)
    document_change = new.model_service.prefill.model_copy(update={"extra_args": ["--x"]})
    new = new.model_copy(
        update={"model_service": new.model_service.model_copy(update={"prefill": document_change})}
    )
    plan = plan_rollout(new, "old-revision", old)
    assert plan.changed_roles == ("prefill",)
    decode = plan.steps_of("decode")
    assert [(s.partition, s.changed, s.gate) for s in decode] == [(0, False, None)]


def test_without_the_previous_spec_every_role_counts_as_changed_so_no_gate_is_skipped() -> None:
    spec = demo_spec("plan", decode_replicas(2), CANARY, between_roles(approval=True))
    plan = plan_rollout(spec, "old-revision", None)
    assert plan.changed_roles == ("decode", "prefill")
    assert plan.steps[0].gate is not None
    assert plan.between_roles is not None


def test_between_roles_gate_is_skipped_when_the_first_role_did_not_change() -> None:
    gate = between_roles(approval=True)
    old = demo_spec("plan", gate)
    same = demo_spec("plan", gate)
    assert plan_rollout(same, "rev", old).between_roles is None
    assert plan_rollout(demo_spec("plan", gate, image(NEW_IMAGE)), "rev", old).between_roles


def test_analysis_gates_follow_their_step_and_a_role_level_one_its_last_step() -> None:
    def analysed(document: dict[str, Any]) -> None:
        strategy = document.setdefault("strategy", {})
        strategy["decode"] = {"steps": [{"partition": 1, "analysis": {"window": "30s"}}]}
        strategy["prefill"] = {"analysis": {"window": "20s"}}

    old = demo_spec("plan", decode_replicas(2), analysed)
    new = demo_spec("plan", decode_replicas(2), analysed, image(NEW_IMAGE))
    plan = plan_rollout(new, "old-revision", old)
    windows = [
        (s.name, s.analysis.window.total_seconds() if s.analysis else None) for s in plan.steps
    ]
    assert windows == [
        ("decode/partition-1", 30), ("decode/partition-0", None), ("prefill/partition-0", 20),
    ]
    # The last step is still left to the verify phase.
    assert plan.steps[-1].verify_after is False
    # A first install has no stable pods: each role's own analysis (thresholds) runs once.
    install = plan_rollout(new, None, None)
    assert [(s.role, s.analysis is not None) for s in install.steps] == [
        ("prefill", True), ("decode", False),
    ]
    # A role the upgrade does not change is not analysed.
    same = plan_rollout(old, "old-revision", old)
    assert not any(s.analysis for s in same.steps)
