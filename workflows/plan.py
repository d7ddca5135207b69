"""The model-service plan of one rollout: which roles change, in which partition steps, with
which gates between them. Pure functions of the desired spec and what is recorded as running.

Where it sits: RolloutWorkflow computes the plan once, after preflight has read the target's
last-known-good record, and walks it. Kept free of Temporal so it is tested on its own.

- First install (nothing recorded): every role is applied at once and waited for; partitions and
  gates are meaningless when no old version serves. Roles are created largest pods first: the
  default Kubernetes scheduler spreads pods (LeastAllocated), so 4-GPU decode pods created first
  land one per node and leave no node free for an 8-GPU prefill pod, although the capacity plan
  (which packs) says everything fits.
- Upgrade: roles roll in `strategy.roleOrder`. A changed role goes through its
  `strategy.<role>.steps` (LWS partition, then the step's gate), ending at partition 0; an
  unchanged role is re-applied once (a no-op that also repairs drift) without gates. After the
  first role, `strategy.betweenRoles` gates the second one.
- Every upgrade step but the last is followed by a verification through the gateway, since the
  mixed old/new stack must serve; the rollout's own verify phase follows the last.
- A step with an `analysis` gate (`strategy.<role>.steps[].analysis`) is analysed after its
  verification and before its pause/approval; `strategy.<role>.analysis` analyses the role's last
  step (partition 0), added when the steps do not end there, and on a first install the role
  once every role serves (judged on thresholds alone). Unchanged roles are not analysed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from spec.analysis import Analysis
from spec.rollout import Gate, RoleName, RolloutSpec


def gate_is_set(gate: Gate) -> bool:
    return gate.approval or gate.pause is not None


@dataclass(frozen=True)
class RoleStep:
    """Apply one role at `partition` (None: no partition, first install), wait, maybe verify."""

    role: RoleName
    partition: int | None
    changed: bool
    gate: Gate | None
    gate_name: str
    verify_after: bool
    analysis: Analysis | None = None

    @property
    def name(self) -> str:
        if self.partition is None:
            return self.role
        return f"{self.role}/partition-{self.partition}"


@dataclass(frozen=True)
class RolloutPlan:
    first_install: bool
    changed_roles: tuple[RoleName, ...]
    steps: tuple[RoleStep, ...]
    between_roles: Gate | None

    @property
    def roles(self) -> tuple[RoleName, ...]:
        seen: list[RoleName] = []
        for step in self.steps:
            if step.role not in seen:
                seen.append(step.role)
        return tuple(seen)

    def steps_of(self, role: RoleName) -> tuple[RoleStep, ...]:
        return tuple(step for step in self.steps if step.role == role)


def role_changed(previous: RolloutSpec, desired: RolloutSpec, role: RoleName) -> bool:
    """Whether `role`'s pods would differ: its own section or anything shared by both roles."""
    other = "decode" if role == "prefill" else "prefill"
    before = previous.model_service.model_dump(exclude={other})
    after = desired.model_service.model_dump(exclude={other})
    return before != after or previous.target != desired.target


def plan_rollout(
    desired: RolloutSpec,
    previous_revision: str | None,
    previous_spec: RolloutSpec | None,
) -> RolloutPlan:
    """The steps that take the target from `previous_revision` (None: nothing) to `desired`.

    Without the previous spec (an older record), every role counts as changed: the gates the
    strategy asks for are never skipped for want of knowledge.
    """
    order = tuple(desired.strategy.role_order)
    if previous_revision is None:
        largest_first = sorted(
            order, key=lambda role: -desired.model_service.role(role).gpus_per_pod
        )
        steps = tuple(
            RoleStep(
                role, None, True, None, "", verify_after=False,
                analysis=desired.strategy.for_role(role).analysis,
            )
            for role in largest_first
        )
        return RolloutPlan(True, order, steps, None)

    changed = tuple(
        role
        for role in order
        if previous_spec is None or role_changed(previous_spec, desired, role)
    )
    planned: list[RoleStep] = []
    for role in order:
        if role not in changed:
            planned.append(RoleStep(role, 0, False, None, "", verify_after=False))
            continue
        strategy = desired.strategy.for_role(role)
        for index, step in enumerate(strategy.steps):
            gate = step if gate_is_set(step) else None
            planned.append(
                RoleStep(
                    role, step.partition, True, gate, f"{role}/step-{index + 1}", True,
                    step.analysis,
                )
            )
        if not strategy.steps or strategy.steps[-1].partition != 0:
            planned.append(RoleStep(role, 0, True, None, "", verify_after=True))
        if strategy.analysis is not None and planned[-1].analysis is None:
            planned[-1] = replace(planned[-1], analysis=strategy.analysis)
    # The last step is verified by the rollout's verify phase.
    planned[-1] = replace(planned[-1], verify_after=False)
    between = desired.strategy.between_roles
    first_role_changed = bool(changed) and order[0] in changed
    between_gate = between if gate_is_set(between) and first_role_changed else None
    return RolloutPlan(False, changed, tuple(planned), between_gate)
