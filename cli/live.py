"""Following a rollout on screen: a live view on a terminal, one line per change elsewhere.

Where it sits: `apply --wait`, `status --watch`, `teardown --wait` and the demo hand each
cli.follow.Snapshot to a display from `display_for`. On a terminal the rich live view redraws
cli.views.snapshot_view in place and clears itself when the run ends, so the final view is
printed once, in full (a live frame is cut to the screen); in text mode off a terminal, and on
stderr in JSON mode, a line is written whenever something new happens, so a CI log reads as a
story instead of a flood: first each step the journal recorded as finished since the last look
(snapshots come every half second; a step of a tenth of one would otherwise never show), then
the step running now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from rich.live import Live

from cli.follow import Snapshot
from cli.output import Output
from cli.views import outcome_of, snapshot_view
from spec.workflow_io import Phase, RoleProgress, RunState, StepRecord, StepStatus

REFRESH_PER_SECOND = 4


class Display:
    """Shows snapshots as they come; a context manager so the terminal is always restored."""

    def update(self, snapshot: Snapshot) -> None:
        raise NotImplementedError

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


class LiveDisplay(Display):
    def __init__(self, output: Output) -> None:
        self._live = Live(
            console=output.console,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def update(self, snapshot: Snapshot) -> None:
        self._live.update(snapshot_view(snapshot), refresh=True)

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._live.stop()


class LineDisplay(Display):
    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        # Lines written since the step last changed: two activities of one step heartbeat
        # turn by turn, and their details must not alternate in the log.
        self._step: tuple[str, str] | None = None
        self._written: set[str] = set()
        # Finished steps already told, by name and start (a retried step is told again).
        self._told: set[tuple[str, datetime]] = set()

    def update(self, snapshot: Snapshot) -> None:
        progress = snapshot.progress
        for record in progress.history if progress else []:
            told = (record.name, record.started_at)
            if record.status not in UNFINISHED and told not in self._told:
                self._told.add(told)
                self._write(step_line(record))
        step = (progress.phase.value, progress.step) if progress else ("", snapshot.run_id)
        if step != self._step:
            self._step = step
            self._written = set()
        line = progress_line(snapshot)
        if line not in self._written:
            self._written.add(line)
            self._write(line)


UNFINISHED = frozenset({StepStatus.RUNNING, StepStatus.WAITING})


def step_line(record: StepRecord) -> str:
    """`[step] dependencies  crds/gateway-api  changed  0.13s  (2 objects applied)`: a step the
    journal recorded as finished."""
    seconds = f"  {record.duration_seconds:.2f}s" if record.duration_seconds is not None else ""
    detail = f"  ({record.detail})" if record.detail else ""
    return f"[step] {record.phase.value}  {record.name}  {record.status.value}{seconds}{detail}"


def progress_line(snapshot: Snapshot) -> str:
    """`[ 56%] model-load  model-load/decode  running  decode 2/2 ready, 0/2 loaded, weights
    45%`: the model load by the numbers, other steps with their diagnosis."""
    progress = snapshot.progress
    if progress is None:
        state = "running" if snapshot.running else outcome_of(snapshot).value
        done = "[    ]" if snapshot.running else "[done]"
        return f"{done} {snapshot.target}  {state}" + (
            f"  ({snapshot.notice})" if snapshot.notice else ""
        )
    if not snapshot.running or progress.state == RunState.FINISHED:
        return f"[done] {snapshot.target}  {outcome_of(snapshot).value}"
    line = (
        f"[{progress.percent:>3}%] {progress.phase.value}  {progress.step}  {progress.state.value}"
    )
    if progress.gate is not None and progress.state == RunState.WAITING_FOR_APPROVAL:
        line += f"  gate {progress.gate.name}"
    loading = [role for role in progress.roles if role.role in progress.step.split("/")]
    if progress.phase == Phase.MODEL_LOAD and loading:
        line += "  " + ", ".join(_role_figures(role) for role in loading)
    elif progress.diagnosis:
        line += f"  ({progress.diagnosis})"
    return line


def _role_figures(role: RoleProgress) -> str:
    weights = f", weights {role.load_percent:.0f}%" if role.load_percent is not None else ""
    return (
        f"{role.role} {role.pods_ready}/{role.pods} ready, {role.pods_loaded}/{role.pods} "
        f"loaded{weights}"
    )


def display_for(output: Output) -> Display:
    if output.live:
        return LiveDisplay(output)
    return LineDisplay(output.note)
