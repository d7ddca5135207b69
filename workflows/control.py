"""What people steer in a running rollout: gates, pause and resume, abort.

Where it sits: RolloutWorkflow's `approve`, `pause`, `resume` and `abort` updates are thin
methods on the workflow class (the SDK finds handlers there) that call the validators and
handlers of its RolloutControl. The rollout's body waits here: at a gate of the plan (a timed
pause, an approval, or both) and at the checkpoints between steps, where a requested pause takes
hold. An update that does not apply is rejected by its validator with a sentence saying why, so
it never enters the history.

Abort cancels the running body (the task started by `run`), exactly as an external cancel does;
the rollout then rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.rollout import Gate
    from spec.workflow_io import (
        AbortRequest,
        ApproveRequest,
        ControlResult,
        GateStatus,
        Outcome,
        PauseRequest,
        Phase,
        ResumeRequest,
        RunState,
        StepStatus,
    )
    from workflows.progress import RolloutProgress


class RolloutControl:
    def __init__(self, progress: RolloutProgress) -> None:
        self._progress = progress
        self._approved: set[str] = set()
        self._approval_note = ""
        self._abort: AbortRequest | None = None
        self._body: asyncio.Task[None] | None = None

    def start(self, body: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run the rollout's body as a task an abort can cancel (at once, if one came first)."""
        self._body = asyncio.create_task(body)
        if self._abort is not None:
            self._body.cancel()
        return self._body

    # --- where the body waits -------------------------------------------------------------

    async def pass_gate(self, name: str, gate: Gate) -> None:
        """A timed pause and/or an approval; only an abort (or cancellation) gets past early."""
        progress = self._progress
        now = workflow.now()
        with progress.step(Phase.GATE, name, StepStatus.WAITING) as outcome:
            progress.gate = GateStatus(
                name=name,
                approval=gate.approval,
                since=now,
                pause_until=now + gate.pause if gate.pause is not None else None,
            )
            try:
                if gate.pause is not None:
                    progress.state = RunState.TIMED_PAUSE
                    progress.publish()
                    await workflow.sleep(gate.pause)
                if gate.approval:
                    progress.state = RunState.WAITING_FOR_APPROVAL
                    progress.publish()
                    await workflow.wait_condition(lambda: name in self._approved)
            finally:
                progress.gate = None
                progress.state = RunState.RUNNING
            outcome.detail = self._approval_note if gate.approval else "pause elapsed"
        progress.publish()

    async def checkpoint(self) -> None:
        """Where a requested pause takes hold: between steps, never inside one."""
        progress = self._progress
        if not progress.pause_requested:
            return
        with progress.step(Phase.GATE, "paused", StepStatus.WAITING) as outcome:
            progress.state = RunState.PAUSED
            progress.publish()
            try:
                await workflow.wait_condition(lambda: not progress.pause_requested)
            finally:
                progress.state = RunState.RUNNING
            outcome.detail = "resumed"
        progress.publish()

    # --- updates --------------------------------------------------------------------------

    def approve(self, request: ApproveRequest) -> ControlResult:
        gate = self._progress.gate
        assert gate is not None
        self._approved.add(gate.name)
        who = f" by {request.by}" if request.by else ""
        self._approval_note = f"approved{who}" + (f": {request.note}" if request.note else "")
        return self._ack(f"gate {gate.name} approved{who}")

    def validate_approve(self, request: ApproveRequest) -> None:
        self._reject_when_finished("approve")
        progress = self._progress
        gate = progress.gate
        if gate is None or progress.state != RunState.WAITING_FOR_APPROVAL:
            waiting = (
                f"gate {gate.name} is in its timed pause" if gate is not None
                else f"the rollout is at {progress.step_name} ({progress.state.value})"
            )
            raise ValueError(f"no gate is waiting for approval: {waiting}")
        if request.gate and request.gate != gate.name:
            raise ValueError(
                f"gate {request.gate!r} is not the one waiting for approval; {gate.name!r} is"
            )

    def pause(self, request: PauseRequest) -> ControlResult:
        self._progress.pause_requested = True
        who = f" by {request.by}" if request.by else ""
        return self._ack(f"pause requested{who}: the rollout holds before its next step")

    def validate_pause(self, request: PauseRequest) -> None:
        self._reject_when_finished("pause")
        if self._progress.pause_requested:
            raise ValueError("the rollout is already paused (or pausing); resume it instead")

    def resume(self, request: ResumeRequest) -> ControlResult:
        self._progress.pause_requested = False
        who = f" by {request.by}" if request.by else ""
        return self._ack(f"resumed{who}")

    def validate_resume(self, request: ResumeRequest) -> None:
        self._reject_when_finished("resume")
        if not self._progress.pause_requested:
            raise ValueError(f"the rollout is not paused (it is {self._progress.state.value})")

    def abort(self, request: AbortRequest) -> ControlResult:
        self._abort = request
        self._progress.abort_requested = True
        if self._body is not None and not self._body.done():
            self._body.cancel()
        return self._ack("abort accepted: stopping and rolling back")

    def validate_abort(self, request: AbortRequest) -> None:
        self._reject_when_finished("abort")
        if self._abort is not None:
            raise ValueError("the rollout is already being aborted")

    def abort_reason(self) -> str | None:
        """Why the body was cancelled, if it was: an abort, or a cancel request."""
        if self._abort is None:
            cancelled = workflow.cancellation_reason()
            return None if cancelled is None else f"cancelled: {cancelled or 'no reason given'}"
        who = f" by {self._abort.by}" if self._abort.by else ""
        return f"aborted{who}" + (f": {self._abort.reason}" if self._abort.reason else "")

    def _reject_when_finished(self, action: str) -> None:
        progress = self._progress
        if progress.state == RunState.ROLLING_BACK:
            raise ValueError(f"cannot {action}: the rollout is rolling back ({progress.diagnosis})")
        if progress.state == RunState.FINISHED or progress.outcome != Outcome.RUNNING:
            raise ValueError(
                f"cannot {action}: the rollout has finished ({progress.outcome.value})"
            )

    def _ack(self, message: str) -> ControlResult:
        progress = self._progress
        progress.publish()
        return ControlResult(message=message, state=progress.state, step=progress.step_name)
