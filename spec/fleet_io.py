"""FleetWorkflow's payloads: its input, and the progress (per wave, per target) that is both its
`progress` query answer and its result.

Where it sits: beside spec/workflow_io.py (whose IoModel base, control requests and RolloutResult
it reuses): the CLI's `apply -f fleet.yaml` and `status fleet/NAME`, the tests, and
workflows/fleet.py exchange these through Temporal.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from spec.fleet import FleetPlan
from spec.workflow_io import GateStatus, IoModel, MaintenanceWindow


class FleetInput(IoModel):
    fleet: FleetPlan
    requested_by: str = "cli"
    reason: str = ""


class TargetState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # The target's own rollout failed (and rolled itself back, by its spec's policy).
    FAILED = "failed"
    # Never started: its wave stopped on another target's failure, or the fleet stopped before.
    NOT_STARTED = "not-started"
    ROLLING_BACK = "rolling-back"
    # Succeeded, then returned to its previous revision by the fleet's onFailure policy.
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"
    # Succeeded, but the policy could not return it: a first install has no earlier revision.
    KEPT = "kept"


class WaveState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    GATE = "gate"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    SKIPPED = "skipped"


class FleetOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


class FleetTargetStatus(IoModel):
    name: str
    target: str = Field(description="`<cluster>/<namespace>/<name>`.")
    workflow_id: str = Field(description="The target's own rollout ID, `rollout/<target>`.")
    state: TargetState = TargetState.PENDING
    revision: str | None = None
    previous_revision: str | None = None
    detail: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class FleetWaveStatus(IoModel):
    name: str
    max_parallel: int
    state: WaveState = WaveState.PENDING
    targets: list[FleetTargetStatus]


class FleetEvent(IoModel):
    """One line of the fleet's timeline."""

    at: datetime
    wave: str = ""
    target: str = ""
    event: str


class FleetProgress(IoModel):
    fleet: str
    workflow_id: str
    outcome: FleetOutcome = FleetOutcome.RUNNING
    wave: str = Field(default="", description="The wave running or waiting at its gate.")
    gate: GateStatus | None = None
    on_failure: str
    diagnosis: str | None = None
    waves: list[FleetWaveStatus]
    timeline: list[FleetEvent] = Field(default_factory=list)

    def target(self, name: str) -> FleetTargetStatus:
        return next(t for w in self.waves for t in w.targets if t.name == name)


class FleetUpgradeInput(IoModel):
    """What a fleet's schedule (`upgrade/fleet/<name>`) stores and each firing receives."""

    fleet: FleetPlan
    maintenance_window: MaintenanceWindow | None = None


class FleetUpgradeResult(IoModel):
    fleet: str
    outcome: str = Field(description="The fleet's outcome, or `skipped: ...` and why.")
    skipped: bool
    fleet_workflow_id: str | None = None
