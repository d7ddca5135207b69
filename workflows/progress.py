"""What a rollout shows while it runs: phase, step, state, per-role progress, percent, journal.

Where it sits: RolloutWorkflow owns one RolloutProgress; its steps (workflows/steps.py), gates
and control (workflows/control.py) and rollback (workflows/rollback.py) move it forward, and it
answers the `progress` query, the Temporal UI's current details and the result. Entering a new
phase is the one place the phase search attribute is upserted.

Percent counts milestones computed from the plan: the phases around the model service, and one
per model-service step of the plan (before the plan is known, one per role). A milestone is
reached by name, so a name the plan does not hold is a bug caught at once, not a percent that
silently drifts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import ModelLoadResult
    from spec.rollout import RoleName, RolloutSpec
    from spec.workflow_io import (
        FailureReport,
        GateStatus,
        Outcome,
        Phase,
        Progress,
        RoleProgress,
        RollbackReport,
        RolloutResult,
        RunState,
        StepStatus,
    )
    from workflows import search
    from workflows.journal import Journal, StepOutcome
    from workflows.metrics import RolloutMetrics
    from workflows.plan import RolloutPlan

# Milestones around the model-service steps, in the order the rollout reaches them.
MILESTONES_BEFORE = ("preflight", "dependencies", "gateway-provider", "namespace", "infra")
MILESTONES_AFTER = ("verify", "record")


def milestones(spec: RolloutSpec, plan: RolloutPlan | None) -> tuple[str, ...]:
    """Every milestone of the rollout; before the plan is known, one step per role stands in."""
    steps = (
        tuple(step.name for step in plan.steps)
        if plan is not None
        else tuple(spec.strategy.role_order)
    )
    return (*MILESTONES_BEFORE, *steps, *MILESTONES_AFTER)


class RolloutProgress:
    def __init__(self, spec: RolloutSpec) -> None:
        self.spec = spec
        self.journal = Journal()
        self.metrics = RolloutMetrics(spec.target_id)
        self.phase = Phase.PREFLIGHT
        self.step_name = "starting"
        self.state = RunState.RUNNING
        self.outcome = Outcome.RUNNING
        self.diagnosis: str | None = None
        self.gate: GateStatus | None = None
        self.pause_requested = False
        self.abort_requested = False
        self._milestones = milestones(spec, None)
        # The result, once the rollout has finished: what the UI's details state from then on.
        self.final: RolloutResult | None = None
        self._reached: list[str] = []
        self.roles: dict[RoleName, RoleProgress] = {
            role: RoleProgress(
                role=role,
                image=spec.model_service.image_for(role),
                groups=spec.model_service.role(role).replicas,
                pods=spec.model_service.role(role).pods,
            )
            for role in spec.strategy.role_order
        }

    # --- moving forward -------------------------------------------------------------------

    def enter(self, phase: Phase, step: str) -> None:
        self.step_name = step
        if phase != self.phase:
            self.phase = phase
            search.update(phase=phase.value)

    @contextmanager
    def step(
        self, phase: Phase, name: str, status: StepStatus = StepStatus.RUNNING
    ) -> Iterator[StepOutcome]:
        """Enter `name`, journal it (failed or cancelled when the body raises) and publish."""
        self.enter(phase, name)
        with self.journal.step(phase, name, workflow.now, status) as outcome:
            self.publish()
            yield outcome

    def skip(self, phase: Phase, name: str, why: str) -> None:
        self.journal.add(phase, name, StepStatus.SKIPPED, workflow.now(), why)

    def planned(self, plan: RolloutPlan) -> None:
        self._milestones = milestones(self.spec, plan)

    def reached(self, milestone: str) -> None:
        if milestone not in self._milestones:
            raise ValueError(f"{milestone!r} is not a milestone of this rollout")
        self._reached.append(milestone)

    def succeeded(self) -> None:
        self.outcome = Outcome.SUCCEEDED
        self._reached = list(self._milestones)

    def note_stable(self, revision: str | None, spec: RolloutSpec | None) -> None:
        """What serves before this rollout: the last-known-good revision and its images."""
        for role, current in self.roles.items():
            self.roles[role] = current.model_copy(
                update={
                    "stable_revision": revision,
                    "stable_image": spec.model_service.image_for(role) if spec else None,
                }
            )

    def note_revision(self, revision: str) -> None:
        for role, current in self.roles.items():
            self.roles[role] = current.model_copy(update={"revision": revision})

    def note_partition(self, role: RoleName, partition: int) -> None:
        self.roles[role] = self.roles[role].model_copy(
            update={"partition": partition, "updating": True}
        )

    def note_loaded(self, role: RoleName, partition: int, loaded: ModelLoadResult) -> None:
        self.metrics.model_loaded(role, loaded.elapsed_seconds)
        current = self.roles.get(role)
        if current is None:
            return
        self.roles[role] = current.model_copy(
            update={
                "partition": partition,
                "groups_updated": current.groups - partition,
                "pods_ready": len(loaded.pods),
                "pods_loaded": len(loaded.pods),
                "load_percent": 100.0,
            }
        )

    # --- what people see ------------------------------------------------------------------

    def percent(self) -> int:
        if self.state == RunState.FINISHED:
            return 100
        return min(99, round(100 * len(self._reached) / len(self._milestones)))

    def publish(self) -> None:
        """What the Temporal UI shows for this run (no history event: it rides on the task).

        While a gate or a pause holds the rollout, the exact command that continues it (and the
        one that aborts it); once finished, the outcome and why, never a stale "rolling back"."""
        if self.state == RunState.FINISHED and self.final is not None:
            workflow.set_current_details("\n\n".join(final_details(self.final)))
            return
        target = self.spec.target_id
        lines = [
            f"**{target}** · phase **{self.phase.value}** · step `{self.step_name}` · "
            f"{self.percent()}%",
            f"state: **{self.state.value}**"
            + (f" (outcome {self.outcome.value})" if self.outcome != Outcome.RUNNING else ""),
        ]
        if self.gate is not None:
            if self.state == RunState.WAITING_FOR_APPROVAL:
                lines += [
                    f"gate `{self.gate.name}` waiting for approval",
                    f"continue: `llmd-rollout approve {target}` · "
                    f"stop and roll back: `llmd-rollout abort {target}`",
                ]
            else:
                until = self.gate.pause_until
                lines.append(
                    f"gate `{self.gate.name}` waiting for pause"
                    + (f" until {until:%H:%M:%S} UTC" if until is not None else "")
                )
        if self.state == RunState.PAUSED:
            lines.append(
                f"paused: `llmd-rollout resume {target}` continues · "
                f"`llmd-rollout abort {target}` rolls back"
            )
        elif self.pause_requested:
            lines.append("pause requested: holds before the next step")
        if self.diagnosis:
            lines.append(f"diagnosis: {self.diagnosis}")
        workflow.set_current_details("\n\n".join(lines))

    def query(self) -> Progress:
        return Progress(
            workflow_id=workflow.info().workflow_id,
            target=self.spec.target_id,
            phase=self.phase,
            step=self.step_name,
            state=self.state,
            percent=self.percent(),
            roles=list(self.roles.values()),
            diagnosis=self.diagnosis,
            gate=self.gate,
            pause_requested=self.pause_requested,
            abort_requested=self.abort_requested,
            outcome=self.outcome,
            history=self.journal.records(),
        )

    def result(
        self,
        started: datetime,
        revision: str | None,
        previous_revision: str | None,
        failure: FailureReport | None,
        rollback: RollbackReport | None,
    ) -> RolloutResult:
        finished = workflow.now()
        return RolloutResult(
            workflow_id=workflow.info().workflow_id,
            target=self.spec.target_id,
            outcome=self.outcome,
            revision=revision,
            previous_revision=previous_revision,
            phases=self.journal.phases(),
            steps=self.journal.records(),
            failure=failure,
            rollback=rollback,
            started_at=started,
            finished_at=finished,
            duration_seconds=(finished - started).total_seconds(),
        )


def final_details(result: RolloutResult) -> list[str]:
    """The current details of a finished rollout: outcome, failure and what was restored."""
    lines = [
        f"**{result.target}** · finished: **{result.outcome.value}** in "
        f"{result.duration_seconds:.1f}s"
    ]
    if result.revision:
        previous = f" (was {result.previous_revision})" if result.previous_revision else ""
        lines.append(f"revision {result.revision}{previous}")
    failure = result.failure
    if failure is not None:
        lines.append(
            f"failed: {failure.reason.value} in {failure.phase.value} at `{failure.step}`: "
            f"{failure.message}"
        )
    rollback = result.rollback
    if rollback is not None:
        restored = rollback.restored_revision or "nothing (first install)"
        verified = "verified" if rollback.verified else "NOT verified"
        lines.append(f"rollback: restored {restored}, {verified}")
    lines.append(f"details: `llmd-rollout status {result.target}`")
    return lines
