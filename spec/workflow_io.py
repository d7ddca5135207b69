"""Workflow inputs, results, progress and control payloads: what the CLI, the schedules and the
Temporal UI exchange with the workflows in workflows/.

Every model here travels through Temporal with the pydantic data converter, so it is JSON with the
same camelCase spelling as the rollout spec. None of them carries a secret value: the spec names
the HF token's Secret and environment variable, never the token.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from spec.reasons import FailureReason
from spec.rollout import RoleName, RolloutSpec
from spec.types import Duration, format_duration


class IoModel(BaseModel):
    """Base of every workflow payload: camelCase on the wire, immutable, unknown fields ignored
    (an older worker must decode what a newer one wrote while a rollout spans both)."""

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


class Phase(StrEnum):
    """Where a rollout is. The first nine are the phases of docs/architecture.md ("Phases"), in
    order; `gate` is a pause or approval between model-service steps (kept apart so waiting for a
    person does not count as time spent deploying)."""

    PREFLIGHT = "preflight"
    DEPENDENCIES = "dependencies"
    GATEWAY_PROVIDER = "gateway-provider"
    NAMESPACE = "namespace"
    INFRA = "infra"
    MODEL_SERVICE = "model-service"
    MODEL_LOAD = "model-load"
    VERIFY = "verify"
    RECORD = "record"
    GATE = "gate"
    ROLLBACK = "rollback"
    TEARDOWN = "teardown"
    DONE = "done"


ROLLOUT_PHASES: tuple[Phase, ...] = (
    Phase.PREFLIGHT,
    Phase.DEPENDENCIES,
    Phase.GATEWAY_PROVIDER,
    Phase.NAMESPACE,
    Phase.INFRA,
    Phase.MODEL_SERVICE,
    Phase.MODEL_LOAD,
    Phase.VERIFY,
    Phase.RECORD,
)


class StepStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    CHANGED = "changed"
    PASSED = "passed"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    """How a rollout ended; also the value of the LlmdOutcome search attribute."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"
    FAILED = "failed"
    KEPT_FOR_INSPECTION = "kept-for-inspection"
    REMOVED = "removed"


class RunState(StrEnum):
    RUNNING = "running"
    WAITING_FOR_APPROVAL = "waiting-for-approval"
    TIMED_PAUSE = "timed-pause"
    PAUSED = "paused"
    ROLLING_BACK = "rolling-back"
    FINISHED = "finished"


class StepRecord(IoModel):
    """One step of the history: a phase's action, a partition step, a gate or a compensation."""

    name: str
    phase: Phase
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    detail: str = ""


class PhaseSummary(IoModel):
    """A phase as the result lists it: changed, unchanged (an upgrade that did not touch it), ..."""

    phase: Phase
    status: StepStatus
    duration_seconds: float
    steps: int


class FailureReport(IoModel):
    """What failed: the reason (shared vocabulary), the step, a sentence and the evidence."""

    reason: FailureReason
    phase: Phase
    step: str
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class CompensationRecord(IoModel):
    """One undo action the rollback ran (or kept on purpose), newest step first."""

    undoes: str
    action: str
    status: Literal["succeeded", "failed", "kept"]
    detail: str = ""


class RollbackReport(IoModel):
    """What the rollback restored, and whether the old version served and verified again."""

    compensations: list[CompensationRecord]
    restored_revision: str | None = Field(
        default=None, description="The model-service revision serving again, if any."
    )
    verified: bool = False
    failure: FailureReport | None = Field(
        default=None, description="Why the rollback itself did not complete, if it did not."
    )


class RolloutInput(IoModel):
    spec: RolloutSpec
    requested_by: str = Field(default="cli", description="Who or what started it: cli, schedule.")
    reason: str = ""


class RolloutResult(IoModel):
    workflow_id: str
    target: str
    outcome: Outcome
    revision: str | None = Field(
        default=None, description="The model-service revision of the spec this rollout applied."
    )
    previous_revision: str | None = None
    phases: list[PhaseSummary]
    steps: list[StepRecord]
    failure: FailureReport | None = None
    rollback: RollbackReport | None = None
    started_at: datetime
    finished_at: datetime
    duration_seconds: float


class RoleProgress(IoModel):
    """Per-role pods as the workflow last saw them (the CLI overlays live heartbeat figures)."""

    role: RoleName
    image: str
    groups: int
    pods: int
    partition: int | None = None
    groups_updated: int = 0
    pods_ready: int = 0
    pods_loaded: int = 0
    load_percent: float | None = None
    # Two revisions side by side, as `kubectl argo rollouts get rollout` shows them: the stable
    # one (last known good, what served before this rollout; restored by a rollback) and the
    # one this rollout applies. The figures above are the updating revision's.
    revision: str | None = Field(default=None, description="The revision this rollout applies.")
    stable_revision: str | None = Field(
        default=None, description="The last-known-good revision (None: first install)."
    )
    stable_image: str | None = None
    updating: bool = Field(
        default=False, description="This role's step has begun: groups from `partition` up "
        "are moving to the new revision; before that every group runs the stable one."
    )


class GateStatus(IoModel):
    name: str
    approval: bool
    since: datetime
    pause_until: datetime | None = None


class Progress(IoModel):
    """The `progress` query: where the rollout is, what it waits for, what it has done."""

    workflow_id: str
    target: str
    phase: Phase
    step: str
    state: RunState
    percent: int = Field(ge=0, le=100)
    roles: list[RoleProgress]
    diagnosis: str | None = None
    gate: GateStatus | None = None
    pause_requested: bool = False
    abort_requested: bool = False
    outcome: Outcome = Outcome.RUNNING
    history: list[StepRecord]
    live: dict[str, Any] | None = Field(
        default=None,
        description="Heartbeat details of the running activity; filled in client side only.",
    )


class ApproveRequest(IoModel):
    """Pass the gate that waits for approval; `gate`, when given, must name that gate."""

    gate: str | None = None
    by: str = ""
    note: str = ""


class PauseRequest(IoModel):
    by: str = ""
    reason: str = ""


class ResumeRequest(IoModel):
    by: str = ""


class AbortRequest(IoModel):
    """Stop and roll back (subject to the spec's rollback policy)."""

    by: str = ""
    reason: str = ""


class ControlResult(IoModel):
    """The answer to an accepted control update; rejected updates fail with a message instead."""

    message: str
    state: RunState
    step: str


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MaintenanceWindow(IoModel):
    """When a scheduled upgrade may start: days of the week and a start time, in UTC."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: time = Field(description="UTC start time of day, e.g. 02:00.")
    duration: Duration

    @model_validator(mode="after")
    def _at_most_a_week(self) -> MaintenanceWindow:
        if self.duration > timedelta(days=7):
            raise ValueError("duration must be at most 7 days")
        return self

    def contains(self, moment: datetime) -> bool:
        """Whether `moment` (naive: UTC) falls in a window opened on one of `days`."""
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        now = aware.astimezone(UTC).replace(tzinfo=None)
        # A window opened on an earlier day may still be open (e.g. Sunday 22:00 for 6h).
        for days_back in range(8):
            day = now.date() - timedelta(days=days_back)
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            opened = datetime.combine(day, self.start.replace(tzinfo=None))
            if opened <= now < opened + self.duration:
                return True
        return False

    def describe(self) -> str:
        days = ",".join(self.days)
        return f"{days} {self.start.strftime('%H:%M')} UTC for {format_duration(self.duration)}"


class SpecSource(IoModel):
    """Where a scheduled upgrade finds the desired spec: a file the worker reads, or stored."""

    path: str | None = Field(default=None, description="A spec file readable by the worker.")
    spec: RolloutSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SpecSource:
        if (self.path is None) == (self.spec is None):
            raise ValueError("set exactly one of path or spec")
        return self


class UpgradeInput(IoModel):
    target: str = Field(description="`<cluster>/<namespace>/<name>`, as RolloutSpec.target_id.")
    source: SpecSource
    maintenance_window: MaintenanceWindow | None = None
    roll_out_unchanged: bool = Field(
        default=False,
        description="Roll out even when the desired spec is the last-known-good one (by default "
        "such a firing ends `unchanged`, with no rollout).",
    )


class UpgradeResult(IoModel):
    target: str
    outcome: str = Field(
        description="`started`, `succeeded`, `unchanged` (the desired spec is the last-known-good "
        "one), `skipped: running <workflow id>`, `skipped: outside the maintenance window ...`, "
        "or the rollout's outcome."
    )
    skipped: bool
    rollout_workflow_id: str | None = None
    rollout: RolloutResult | None = None


class TeardownInput(IoModel):
    """Remove a target's stack in reverse order; shared pieces only when asked."""

    spec: RolloutSpec
    include_gateway_provider: bool = Field(
        default=False, description="Also uninstall the gateway provider (other tenants may use it)."
    )
    include_dependencies: bool = Field(
        default=False, description="Also remove the LWS controller and the CRDs (cluster-wide)."
    )
    keep_namespace: bool = False
    requested_by: str = "cli"


class TeardownResult(IoModel):
    workflow_id: str
    target: str
    outcome: Outcome
    steps: list[StepRecord]
    kept: list[str] = Field(description="What was deliberately left in place, and why.")
    duration_seconds: float
