"""What a person sees of a rollout: phases, per-role pods, weight loading, gate and diagnosis.

Where it sits: `snapshot_view` turns a cli.follow.Snapshot into one rich renderable; `status`
prints it once, the live view (cli.live) redraws it as the rollout moves, and the demo shows it.
It reads only the workflow's own payloads (spec.workflow_io Progress and results, and the model
load heartbeat of spec.activity_io), so what the CLI shows is what the workflow reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli.follow import TEARDOWN_WORKFLOW, Snapshot
from cli.formatting import cut, duration_text, table
from cli.revisions import pods_table, restoring_line, roles_table
from spec.activity_io import ModelLoadProgress, PodLoadState
from spec.reasons import FailureReason
from spec.workflow_io import (
    ROLLOUT_PHASES,
    FailureReport,
    Outcome,
    Phase,
    Progress,
    RollbackReport,
    RolloutResult,
    RunState,
    StepRecord,
    StepStatus,
    TeardownResult,
)

MODEL_LOAD_ACTIVITY = "wait_for_model_load"
# The gate step a requested pause holds at (workflows.control.RolloutControl.checkpoint).
PAUSED_STEP = "paused"
BAR_WIDTH = 24
EVIDENCE_LINES = 5
# How a phase with several steps shows: the first status found in this order.
_PRECEDENCE = (
    StepStatus.FAILED,
    StepStatus.CANCELLED,
    StepStatus.RUNNING,
    StepStatus.WAITING,
    StepStatus.CHANGED,
    StepStatus.PASSED,
    StepStatus.UNCHANGED,
    StepStatus.SKIPPED,
)
_STATUS_STYLE: dict[StepStatus | None, tuple[str, str]] = {
    StepStatus.RUNNING: ("»", "bold cyan"),
    StepStatus.WAITING: ("‖", "bold yellow"),
    StepStatus.CHANGED: ("✓", "green"),
    StepStatus.PASSED: ("✓", "green"),
    StepStatus.UNCHANGED: ("=", "dim"),
    StepStatus.SKIPPED: ("-", "dim"),
    StepStatus.FAILED: ("✗", "bold red"),
    StepStatus.CANCELLED: ("✗", "yellow"),
    None: ("·", "dim"),
}
_OUTCOME_STYLE = {
    Outcome.RUNNING: "bold cyan",
    Outcome.SUCCEEDED: "bold green",
    Outcome.REMOVED: "bold green",
    Outcome.ROLLED_BACK: "bold yellow",
    Outcome.KEPT_FOR_INSPECTION: "bold red",
    Outcome.FAILED: "bold red",
    Outcome.ROLLBACK_FAILED: "bold red",
}



@dataclass(frozen=True)
class PhaseRow:
    phase: Phase
    status: StepStatus | None
    seconds: float
    steps: int
    last: StepRecord | None


def phase_rows(steps: Sequence[StepRecord], now: datetime, teardown: bool) -> list[PhaseRow]:
    """One row per phase: the rollout's nine in order, then gates and rollback if they ran."""
    order: list[Phase] = [] if teardown else list(ROLLOUT_PHASES)
    for step in steps:
        if step.phase not in order:
            order.append(step.phase)
    rows = []
    for phase in order:
        mine = [step for step in steps if step.phase == phase]
        statuses = {step.status for step in mine}
        status = next((s for s in _PRECEDENCE if s in statuses), None)
        seconds = sum(_seconds(step, now) for step in mine)
        rows.append(PhaseRow(phase, status, seconds, len(mine), mine[-1] if mine else None))
    return rows


def snapshot_view(snapshot: Snapshot, now: datetime | None = None) -> RenderableType:
    now = now or datetime.now(UTC)
    parts: list[RenderableType] = [_header(snapshot)]
    progress, result = snapshot.progress, snapshot.result
    steps = (
        progress.history if progress is not None else result.steps if result is not None else []
    )
    parts.append(_summary_line(snapshot))
    if steps or snapshot.workflow_type != TEARDOWN_WORKFLOW:
        parts += [Text(""), _phases_table(steps, now, snapshot.workflow_type == TEARDOWN_WORKFLOW)]
    if progress is not None and progress.roles and snapshot.running:
        parts += [Text(""), roles_table(progress.roles, progress.state)]
        heartbeat = model_load(progress)
        if heartbeat is not None and heartbeat.pods:
            parts += [Text(""), pods_table(heartbeat)]
    parts += _attention(snapshot)
    if isinstance(result, RolloutResult):
        parts += _result_lines(result)
    if isinstance(result, TeardownResult) and result.kept:
        parts += [Text(""), Text("kept: " + "; ".join(result.kept), style="dim")]
    return Group(*parts)


def model_load(progress: Progress) -> ModelLoadProgress | None:
    """The running model-load wait's heartbeat (per-pod load state), if one runs."""
    entry = (progress.live or {}).get(MODEL_LOAD_ACTIVITY)
    heartbeat = entry.get("heartbeat") if isinstance(entry, dict) else None
    if not isinstance(heartbeat, dict):
        return None
    try:
        return ModelLoadProgress.model_validate(heartbeat)
    except ValidationError:
        return None


def loading_pods(progress: Progress) -> list[PodLoadState]:
    heartbeat = model_load(progress)
    return heartbeat.pods if heartbeat is not None else []


def outcome_of(snapshot: Snapshot) -> Outcome:
    if snapshot.result is not None:
        return snapshot.result.outcome
    if snapshot.progress is not None:
        return snapshot.progress.outcome
    return Outcome.RUNNING if snapshot.running else Outcome.FAILED


def _header(snapshot: Snapshot) -> Text:
    kind = "teardown" if snapshot.workflow_type == TEARDOWN_WORKFLOW else "rollout"
    header = Text()
    header.append(f"{kind} ", style="bold")
    header.append(snapshot.target, style="bold")
    # The workflow ID is `rollout/<target>`: the run tells which of the target's rollouts.
    header.append(f"   run {snapshot.run_id}", style="dim")
    return header


def _summary_line(snapshot: Snapshot) -> RenderableType:
    progress = snapshot.progress
    outcome = outcome_of(snapshot)
    line = Text()
    if snapshot.running and progress is not None:
        line.append(progress.state.value, style=_state_style(progress.state))
        line.append(f"   phase {progress.phase.value}   step {progress.step}   ")
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            line, ProgressBar(total=100, completed=progress.percent, width=BAR_WIDTH),
            Text(f"{progress.percent:>3}%"),
        )
        return grid
    if snapshot.running:
        line.append("running", style="bold cyan")
        return line
    line.append(outcome.value, style=_OUTCOME_STYLE.get(outcome, "bold"))
    result = snapshot.result
    if result is not None:
        line.append(f"   in {duration_text(result.duration_seconds)}")
    if isinstance(result, RolloutResult) and result.revision:
        previous = f" (was {result.previous_revision})" if result.previous_revision else ""
        line.append(f"   revision {result.revision}{previous}", style="dim")
    return line


def _phases_table(steps: Sequence[StepRecord], now: datetime, teardown: bool) -> Table:
    grid = table()
    grid.add_column("", no_wrap=True)
    grid.add_column("STEP" if teardown else "PHASE", no_wrap=True, min_width=16)
    grid.add_column("STATUS", no_wrap=True, min_width=9)
    grid.add_column("TIME", justify="right", no_wrap=True, min_width=6)
    # The only column that gives way on a narrow terminal (cut, never wrapped).
    grid.add_column("LATEST")
    if teardown:
        for step in steps:
            glyph, style = _STATUS_STYLE[step.status]
            grid.add_row(
                Text(glyph, style=style), step.name, Text(step.status.value, style=style),
                duration_text(_seconds(step, now)), cut(step.detail),
            )
        return grid
    for row in phase_rows(steps, now, teardown):
        glyph, style = _STATUS_STYLE[row.status]
        latest = ""
        if row.last is not None:
            latest = row.last.name + (f": {row.last.detail}" if row.last.detail else "")
        grid.add_row(
            Text(glyph, style=style),
            Text(row.phase.value, style="bold" if row.status == StepStatus.RUNNING else ""),
            Text(row.status.value if row.status else "pending", style=style),
            duration_text(row.seconds) if row.status else "",
            cut(latest),
        )
    return grid


def _attention(snapshot: Snapshot) -> list[RenderableType]:
    """The lines that ask for a person: a gate, a pause, the diagnosis, a missing worker."""
    lines: list[RenderableType] = []
    progress = snapshot.progress
    target = snapshot.target
    if snapshot.running and progress is not None:
        gate = progress.gate
        if gate is not None and progress.state == RunState.WAITING_FOR_APPROVAL:
            lines.append(
                Text(
                    f"waiting for approval at gate {gate.name}: "
                    f"llmd-rollout approve {target}   (or abort {target})",
                    style="bold yellow",
                )
            )
        elif gate is not None and gate.pause_until is not None:
            lines.append(
                Text(f"gate {gate.name}: pausing until {gate.pause_until:%H:%M:%S} UTC",
                     style="yellow")
            )
        if progress.pause_requested:
            lines.append(
                Text(f"paused (or pausing before the next step): llmd-rollout resume {target}",
                     style="yellow")
            )
        if progress.abort_requested:
            lines.append(Text("abort requested: rolling back", style="yellow"))
        restoring = restoring_line(progress)
        if restoring:
            lines.append(Text(restoring, style="bold yellow"))
        if progress.diagnosis:
            lines.append(Text(f"diagnosis: {progress.diagnosis}", style="magenta"))
    if snapshot.notice:
        lines.append(Text(snapshot.notice, style="yellow"))
    return [Text(""), *lines] if lines else []


def _result_lines(result: RolloutResult) -> list[RenderableType]:
    lines: list[RenderableType] = []
    if result.failure is not None:
        lines += [Text(""), *_failure_lines(result.failure)]
    if result.rollback is not None:
        lines += [Text(""), *_rollback_lines(result.rollback)]
    return lines


def failure_place(phase: str, step: str) -> str:
    """Where a rollout stopped, in words: `at gate between-roles`, `while paused`,
    `in model-load at model-load/decode`."""
    if phase == Phase.GATE.value:
        return "while paused" if step == PAUSED_STEP else f"at gate {step}"
    return f"in {phase} at {step}" if step else f"in {phase}"


def failure_headline(reason: str, phase: str, step: str) -> str:
    """`failed: ImagePull in model-service at ...`; an abort is a person's decision, not a
    failure: `aborted at gate between-roles`."""
    place = failure_place(phase, step)
    if reason == FailureReason.ABORTED.value:
        return f"aborted {place}"
    return f"failed: {reason} {place}"


def failure_brief(reason: str, phase: str, step: str) -> str:
    """For a table cell: `ImagePull in model-load`, `aborted at gate between-roles`."""
    if reason == FailureReason.ABORTED.value:
        return f"aborted {failure_place(phase, step)}"
    return f"{reason} in {phase}"


def _failure_lines(failure: FailureReport) -> list[RenderableType]:
    headline = failure_headline(failure.reason.value, failure.phase.value, failure.step)
    lines: list[RenderableType] = [
        Text(headline, style="bold red"),
        Text(f"  {failure.message}"),
    ]
    evidence: dict[str, Any] = failure.evidence
    plan = evidence.get("plan")
    if isinstance(plan, str):
        lines += [Text(""), Text(plan)]
    for line in _evidence_lines(evidence):
        lines.append(Text(f"  {line}", style="dim"))
    return lines


def _evidence_lines(evidence: dict[str, Any]) -> list[str]:
    """The warning events and the last log lines; the result document has all of it."""
    events = [event for event in evidence.get("events") or [] if isinstance(event, dict)]
    warnings = [event for event in events if event.get("type") == "Warning"]
    lines = [
        f"event {event.get('object', '')}: {event.get('reason', '')} "
        f"{event.get('message', '')}".rstrip()
        for event in (warnings or events)[-EVIDENCE_LINES:]
    ]
    logs = evidence.get("log_lines") or evidence.get("logLines") or []
    if logs:
        lines.append("last log lines:")
        lines += [f"  {line}" for line in logs[-EVIDENCE_LINES:]]
    return lines


def _rollback_lines(rollback: RollbackReport) -> list[RenderableType]:
    restored = rollback.restored_revision or "nothing (first install)"
    verified = "verified" if rollback.verified else "NOT verified"
    style = "yellow" if rollback.failure is None else "bold red"
    lines: list[RenderableType] = [
        Text(f"rollback: restored {restored}, {verified}", style=style)
    ]
    for record in rollback.compensations:
        detail = f": {record.detail}" if record.detail else ""
        lines.append(Text(f"  {record.status:<9} {record.action}{detail}"))
    if rollback.failure is not None:
        lines.append(Text(f"  rollback failed: {rollback.failure.message}", style="bold red"))
    return lines


def _state_style(state: RunState) -> str:
    if state in (RunState.WAITING_FOR_APPROVAL, RunState.PAUSED, RunState.TIMED_PAUSE):
        return "bold yellow"
    if state == RunState.ROLLING_BACK:
        return "bold red"
    return "bold cyan"


def _seconds(step: StepRecord, now: datetime) -> float:
    if step.duration_seconds is not None:
        return step.duration_seconds
    started = step.started_at if step.started_at.tzinfo else step.started_at.replace(tzinfo=UTC)
    return max(0.0, (now - started).total_seconds())
