"""What people see of a fleet: per-wave and per-target state, the gate, the timeline, UI text.

Where it sits: FleetWorkflow (workflows/fleet.py) records every change here; its `progress` query
and its result are `FleetBook.snapshot()`, and each change is published to the Temporal UI with
`workflow.set_current_details`. The payload models are frozen, so the book keeps its own
mutable copies and builds a fresh FleetProgress on each read.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.fleet import FleetPlan
    from spec.fleet_io import (
        FleetEvent,
        FleetOutcome,
        FleetProgress,
        FleetTargetStatus,
        FleetWaveStatus,
        TargetState,
        WaveState,
    )
    from spec.workflow_io import GateStatus
    from workflows.ids import rollout_workflow_id


class FleetBook:
    def __init__(self, plan: FleetPlan, workflow_id: str) -> None:
        self._plan = plan
        self._workflow_id = workflow_id
        self._targets: dict[str, FleetTargetStatus] = {
            t.name: FleetTargetStatus(
                name=t.name, target=t.spec.target_id,
                workflow_id=rollout_workflow_id(t.spec.target_id),
            )
            for wave in plan.waves
            for t in wave.targets
        }
        self._waves: dict[str, WaveState] = {w.name: WaveState.PENDING for w in plan.waves}
        self._timeline: list[FleetEvent] = []
        self.outcome = FleetOutcome.RUNNING
        self.wave = ""
        self.gate: GateStatus | None = None
        self.diagnosis: str | None = None

    def event(self, event: str, *, wave: str = "", target: str = "") -> None:
        self._timeline.append(FleetEvent(at=workflow.now(), wave=wave, target=target, event=event))
        self.publish()

    def wave_state(self, wave: str, state: WaveState, event: str | None = None) -> None:
        self._waves[wave] = state
        if state in (WaveState.RUNNING, WaveState.GATE):
            self.wave = wave
        self.event(event or f"wave {state.value}", wave=wave)

    def target_state(self, name: str, state: TargetState, detail: str, **fields: Any) -> None:
        """Record a target's new state; `fields` sets revision, previous_revision, started_at,
        finished_at. The event goes on the timeline under the target's wave."""
        update: dict[str, Any] = {"state": state, "detail": detail, **fields}
        self._targets[name] = self._targets[name].model_copy(update=update)
        wave = next(w.name for w in self._plan.waves if any(t.name == name for t in w.targets))
        self.event(f"{state.value}" + (f": {detail}" if detail else ""), wave=wave, target=name)

    def state_of(self, name: str) -> TargetState:
        return self._targets[name].state

    def snapshot(self) -> FleetProgress:
        return FleetProgress(
            fleet=self._plan.name,
            workflow_id=self._workflow_id,
            outcome=self.outcome,
            wave=self.wave,
            gate=self.gate,
            on_failure=self._plan.on_failure,
            diagnosis=self.diagnosis,
            waves=[
                FleetWaveStatus(
                    name=w.name, max_parallel=w.max_parallel, state=self._waves[w.name],
                    targets=[self._targets[t.name] for t in w.targets],
                )
                for w in self._plan.waves
            ],
            timeline=list(self._timeline),
        )

    def publish(self) -> None:
        """One line per wave for the Temporal UI: the wave's state and each target's."""
        lines = [f"fleet {self._plan.name}: {self.outcome.value}"]
        if self.gate is not None:
            lines.append(f"gate {self.gate.name}: " + (
                "waiting for approval (llmd-rollout approve fleet/"
                f"{self._plan.name})" if self.gate.approval else "soaking"
            ))
        for number, wave in enumerate(self._plan.waves, start=1):
            targets = ", ".join(
                f"{t.name} {self._targets[t.name].state.value}" for t in wave.targets
            )
            lines.append(f"wave {number} {wave.name} ({self._waves[wave.name].value}): {targets}")
        if self.diagnosis:
            lines.append(self.diagnosis)
        workflow.set_current_details("\n".join(lines))
