"""The step history of a workflow run: what ran, in which phase, how it ended, how long it took.

Where it sits: the workflows write to it as steps start and end (times from `workflow.now()`, so
replay rebuilds the same journal); the progress query and the result read it, and the result's
phase list is summarized from it. `Journal.step` is the one way a step that takes time is
journaled: it opens the entry, and closes it with what the step reported, or as failed (or
cancelled) when the step raised, re-raising.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from spec.workflow_io import Phase, PhaseSummary, StepRecord, StepStatus

# How a phase with several steps is summarized: the first status found in this order wins. A
# phase whose changes were all no-ops reads `unchanged` even though its checks `passed`.
_PHASE_PRECEDENCE = (
    StepStatus.FAILED,
    StepStatus.CANCELLED,
    StepStatus.RUNNING,
    StepStatus.WAITING,
    StepStatus.CHANGED,
    StepStatus.UNCHANGED,
    StepStatus.PASSED,
    StepStatus.SKIPPED,
)


@dataclass
class _Entry:
    name: str
    phase: Phase
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""

    def record(self) -> StepRecord:
        duration = (
            (self.finished_at - self.started_at).total_seconds()
            if self.finished_at is not None
            else None
        )
        return StepRecord(
            name=self.name,
            phase=self.phase,
            status=self.status,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_seconds=duration,
            detail=self.detail,
        )


@dataclass
class StepOutcome:
    """What the body of a journaled step reports; a body that says nothing `passed`."""

    status: StepStatus = StepStatus.PASSED
    detail: str | None = None


def failed_status(error: BaseException, cancelled: StepStatus = StepStatus.CANCELLED) -> StepStatus:
    return cancelled if isinstance(error, asyncio.CancelledError) else StepStatus.FAILED


class Journal:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def start(
        self,
        phase: Phase,
        name: str,
        now: datetime,
        status: StepStatus = StepStatus.RUNNING,
        detail: str = "",
    ) -> int:
        self._entries.append(_Entry(name, phase, status, now, detail=detail))
        return len(self._entries) - 1

    def finish(
        self, index: int, status: StepStatus, now: datetime, detail: str | None = None,
        *, ran: tuple[datetime | None, datetime | None] = (None, None),
    ) -> None:
        """End step `index` at `now`; `ran`: when its work began and ended, where another
        workflow did it and said so (the cluster workflow's pieces), kept within this step's
        own start and `now`."""
        entry = self._entries[index]
        entry.status = status
        began, ended = ran
        entry.finished_at = now if ended is None else max(entry.started_at, min(ended, now))
        if began is not None:
            entry.started_at = min(max(entry.started_at, began), entry.finished_at)
        if detail is not None:
            entry.detail = detail

    def add(self, phase: Phase, name: str, status: StepStatus, now: datetime, detail: str) -> None:
        """A step that took no time of its own (skipped, or decided without a call)."""
        index = self.start(phase, name, now, status, detail)
        self._entries[index].finished_at = now

    @contextmanager
    def step(
        self,
        phase: Phase,
        name: str,
        clock: Callable[[], datetime],
        status: StepStatus = StepStatus.RUNNING,
        cancelled: StepStatus = StepStatus.CANCELLED,
    ) -> Iterator[StepOutcome]:
        """Journal the step run in the `with` body. An exception (cancellation included: not
        BaseException, which the SDK uses to evict a run) closes the entry as failed, or as
        `cancelled` on cancellation, and goes on up."""
        index = self.start(phase, name, clock(), status)
        outcome = StepOutcome()
        try:
            yield outcome
        except (asyncio.CancelledError, Exception) as error:
            self.finish(index, failed_status(error, cancelled), clock())
            raise
        self.finish(index, outcome.status, clock(), outcome.detail)

    def records(self) -> list[StepRecord]:
        return [entry.record() for entry in self._entries]

    def phases(self) -> list[PhaseSummary]:
        """One summary per phase, in the order phases first appeared. Phases interleave (each
        partition step applies, waits and verifies) and a phase's steps may run side by side
        (the dependencies' CRD bundles and releases), so a phase's duration is the time at least
        one of its steps was running."""
        order: list[Phase] = []
        for entry in self._entries:
            if entry.phase not in order:
                order.append(entry.phase)
        summaries = []
        for phase in order:
            entries = [e for e in self._entries if e.phase == phase]
            statuses = {e.status for e in entries}
            status = next(s for s in _PHASE_PRECEDENCE if s in statuses)
            busy = covered_seconds(
                [(e.started_at, e.finished_at) for e in entries if e.finished_at is not None]
            )
            summaries.append(
                PhaseSummary(phase=phase, status=status, duration_seconds=busy, steps=len(entries))
            )
        return summaries


def covered_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Seconds covered by at least one of `intervals` (overlaps counted once): adding the
    steps of a phase up counted the side-by-side ones twice, and a 160 s rollout reported a
    304 s dependencies phase (bench/concurrency.py at N=50)."""
    covered = 0.0
    end: datetime | None = None
    for started, finished in sorted(intervals):
        if end is None or started >= end:
            covered += (finished - started).total_seconds()
            end = finished
        elif finished > end:
            covered += (finished - end).total_seconds()
            end = finished
    return covered
