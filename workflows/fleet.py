"""FleetWorkflow: one rollout spec rolled out to many targets, wave after wave (ID `fleet/<name>`).

Where it sits: the CLI (`apply -f fleet.yaml`, rollouts/fleets.py) starts it with a FleetPlan
(spec/fleet.py). Each target's rollout is an ordinary RolloutWorkflow started as a child under
the target's own ID, `rollout/<cluster>/<namespace>/<name>`, so the one-rollout-per-target rule
holds across fleets, the CLI and schedules: a target already busy refuses the start and counts
as a failed target. Children are abandoned if the fleet is terminated (a rollout is never cut
short mid-way because its fleet went away); `abort` cancels the running ones, which roll back.

A wave runs up to `maxParallel` targets at once, in the order written. Once one fails, the wave
starts no further target (with maxParallel 1 and b before c, c is never touched after b fails),
waits for the running ones, and the fleet stops: the failed target already rolled itself back
(its own spec's policy); `onFailure` then returns the targets that had succeeded, newest first,
those of the failed wave (`rollbackWave`) or of every wave done so far (`rollbackAll`). A
target returns by a rollout of its last-known-good spec, read before its rollout started (the
same path `llmd-rollout rollback` takes); a first install has nothing to return to and is kept.
Later waves are never touched.

Between waves: the `betweenWaves` gate (a soak, then an approval if asked); `approve` and
`abort` are validated updates, `progress` a query (per wave, per target, and the timeline).
Failure is a failed workflow whose ApplicationError detail is the FleetProgress.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from spec.activity_io import LastKnownGood, SnapshotLookupInput
    from spec.fleet import FleetTarget, FleetWave
    from spec.fleet_io import FleetInput, FleetOutcome, FleetProgress, TargetState, WaveState
    from spec.rollout import RolloutSpec
    from spec.workflow_io import (
        AbortRequest,
        ApproveRequest,
        ControlResult,
        GateStatus,
        RolloutInput,
        RolloutResult,
        RunState,
    )
    from workflows import calls
    from workflows.children import start_detached
    from workflows.fleet_progress import FleetBook
    from workflows.ids import rollout_workflow_id
    from workflows.rollout import RolloutWorkflow

LAST_KNOWN_GOOD_BUDGET = timedelta(minutes=2)
FLEET_FAILED = "FleetFailed"


class WaveFailed(Exception):
    """A target of the wave failed; the fleet stops."""


@workflow.defn(name="FleetWorkflow")
class FleetWorkflow:
    @workflow.init
    def __init__(self, request: FleetInput) -> None:
        self._plan = request.fleet
        self._book = FleetBook(request.fleet, workflow.info().workflow_id)
        self._previous: dict[str, LastKnownGood] = {}
        # Targets that succeeded, in the order they finished (the rollback goes newest first).
        self._succeeded: list[tuple[FleetWave, FleetTarget]] = []
        self._approved: set[str] = set()
        self._abort: AbortRequest | None = None
        self._body: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, request: FleetInput) -> FleetProgress:
        book = self._book
        book.event(f"fleet started by {request.requested_by}" + (
            f": {request.reason}" if request.reason else ""
        ))
        failed_wave: FleetWave | None = None
        self._body = asyncio.create_task(self._waves())
        if self._abort is not None:
            self._body.cancel()
        try:
            await self._body
        except (asyncio.CancelledError, WaveFailed) as error:
            failed_wave = self._running_wave()
            if isinstance(error, WaveFailed):
                book.outcome, book.diagnosis = FleetOutcome.FAILED, str(error)
            else:
                book.outcome, book.diagnosis = FleetOutcome.ABORTED, self._abort_reason()
            book.event(f"fleet stopped: {book.diagnosis}")
            await self._roll_back(failed_wave)
        else:
            book.outcome = FleetOutcome.SUCCEEDED
            book.event("fleet succeeded")
        result = book.snapshot()
        if failed_wave is None:
            return result
        raise ApplicationError(
            f"fleet {self._plan.name} {book.outcome.value} in wave {failed_wave.name}: "
            f"{book.diagnosis}",
            result,
            type=FLEET_FAILED,
            non_retryable=True,
        )

    # --- waves ----------------------------------------------------------------------------

    async def _waves(self) -> None:
        for index, wave in enumerate(self._plan.waves):
            if index > 0:
                await self._gate(f"before/{wave.name}", wave.name)
            await self._run_wave(wave)

    async def _run_wave(self, wave: FleetWave) -> None:
        book = self._book
        book.wave_state(
            wave.name, WaveState.RUNNING, f"wave started (maxParallel {wave.max_parallel})"
        )
        waiting = list(wave.targets)
        failed: list[str] = []

        async def lane() -> None:
            # A lane takes the next target only while nothing in the wave has failed.
            while waiting and not failed:
                target = waiting.pop(0)
                if not await self._roll_out(target):
                    failed.append(target.name)

        await asyncio.gather(*(lane() for _ in range(min(wave.max_parallel, len(waiting)))))
        for target in waiting:
            book.target_state(
                target.name, TargetState.NOT_STARTED, f"wave stopped after {failed[0]} failed"
            )
        if failed:
            book.wave_state(wave.name, WaveState.FAILED, f"wave failed: {', '.join(failed)}")
            raise WaveFailed(f"{', '.join(failed)} failed in wave {wave.name}")
        book.wave_state(wave.name, WaveState.SUCCEEDED)

    async def _roll_out(self, target: FleetTarget) -> bool:
        """Roll the target out under its own ID; True when its rollout succeeded."""
        spec = target.spec
        try:
            self._previous[target.name] = await calls.execute(
                calls.READ_LAST_KNOWN_GOOD,
                SnapshotLookupInput(target=spec.target, rollout=spec.metadata.name),
                budget=LAST_KNOWN_GOOD_BUDGET,
                summary=f"read the last-known-good record of {spec.target_id}",
            )
        except ActivityError as unreadable:
            # No record, no way back: the target is not started, and counts as failed.
            cause = unreadable.cause or unreadable
            result: RolloutResult | str = f"not started: its last-known-good record: {cause}"
        else:
            result = await self._child_rollout(target, spec, f"fleet {self._plan.name}")
        if isinstance(result, str):
            self._book.target_state(
                target.name, TargetState.FAILED, result, finished_at=workflow.now()
            )
            return False
        self._book.target_state(
            target.name, TargetState.SUCCEEDED, f"revision {result.revision}",
            revision=result.revision, previous_revision=result.previous_revision,
            finished_at=workflow.now(),
        )
        self._succeeded.append((self._wave_of(target), target))
        return True

    async def _child_rollout(
        self, target: FleetTarget, spec: RolloutSpec, reason: str
    ) -> RolloutResult | str:
        """Start and await the target's RolloutWorkflow; its result, or why it failed."""
        workflow_id = rollout_workflow_id(spec.target_id)
        try:
            child = await start_detached(
                RolloutWorkflow.run,
                RolloutInput(
                    spec=spec, requested_by=f"fleet:{workflow.info().workflow_id}", reason=reason
                ),
                workflow_id=workflow_id, summary=f"{reason}: rollout of {spec.target_id}",
            )
        except WorkflowAlreadyStartedError as running:
            return f"busy: {running.workflow_id} is already running"
        if self._book.state_of(target.name) == TargetState.PENDING:
            self._book.target_state(
                target.name, TargetState.RUNNING, workflow_id, started_at=workflow.now()
            )
        try:
            return await child
        except ChildWorkflowError as failed:
            return _failure_text(failed)

    # --- the gate between waves ------------------------------------------------------------

    async def _gate(self, name: str, wave: str) -> None:
        gate = self._plan.between_waves
        if gate.pause is None and not gate.approval:
            return
        book, now = self._book, workflow.now()
        book.gate = GateStatus(
            name=name, approval=gate.approval, since=now,
            pause_until=now + gate.pause if gate.pause is not None else None,
        )
        book.wave_state(wave, WaveState.GATE, f"gate {name}")
        try:
            if gate.pause is not None:
                await workflow.sleep(gate.pause)
                book.event(f"gate {name}: soak of {gate.pause} elapsed", wave=wave)
            if gate.approval:
                book.event(f"gate {name}: waiting for approval", wave=wave)
                await workflow.wait_condition(lambda: name in self._approved)
        finally:
            book.gate = None

    # --- the onFailure policy --------------------------------------------------------------

    async def _roll_back(self, failed_wave: FleetWave | None) -> None:
        policy = self._plan.on_failure
        chosen = [
            target for wave, target in reversed(self._succeeded)
            if policy == "rollbackAll" or (failed_wave is not None and wave is failed_wave)
        ]
        if failed_wave is not None:
            self._book.wave_state(
                failed_wave.name, WaveState.FAILED,
                f"onFailure {policy}: returning {', '.join(t.name for t in chosen) or 'nothing'}",
            )
        for target in chosen:
            await self._return(target, policy)
        for wave in self._plan.waves:
            if all(self._book.state_of(t.name) == TargetState.PENDING for t in wave.targets):
                self._book.wave_state(wave.name, WaveState.SKIPPED, "wave skipped")
            elif any(self._book.state_of(t.name) == TargetState.ROLLED_BACK for t in wave.targets):
                self._book.wave_state(wave.name, WaveState.ROLLED_BACK)

    async def _return(self, target: FleetTarget, policy: str) -> None:
        """A rollout of the target's last-known-good spec, read before the fleet changed it."""
        book = self._book
        previous = self._previous[target.name]
        if previous.revision is None or previous.spec is None:
            why = "first install" if previous.revision is None else "no spec stored with it"
            book.target_state(target.name, TargetState.KEPT, f"nothing to return to ({why})")
            return
        book.target_state(
            target.name, TargetState.ROLLING_BACK, f"to revision {previous.revision} ({policy})"
        )
        old = previous.spec.model_copy(update={"target": target.spec.target})
        result = await self._child_rollout(
            target, old, f"fleet {self._plan.name} {policy}: back to revision {previous.revision}"
        )
        if isinstance(result, str):
            book.target_state(target.name, TargetState.ROLLBACK_FAILED, result)
        else:
            book.target_state(
                target.name, TargetState.ROLLED_BACK, f"revision {result.revision} serves again",
                revision=result.revision,
            )

    def _wave_of(self, target: FleetTarget) -> FleetWave:
        return next(w for w in self._plan.waves if target in w.targets)

    def _running_wave(self) -> FleetWave | None:
        return next((w for w in self._plan.waves if w.name == self._book.wave), None)

    def _abort_reason(self) -> str:
        if self._abort is None:
            cancelled = workflow.cancellation_reason()
            return f"cancelled: {cancelled or 'no reason given'}"
        who = f" by {self._abort.by}" if self._abort.by else ""
        return f"aborted{who}" + (f": {self._abort.reason}" if self._abort.reason else "")

    # --- control --------------------------------------------------------------------------

    @workflow.update
    def approve(self, request: ApproveRequest) -> ControlResult:
        gate = self._book.gate
        assert gate is not None
        self._approved.add(gate.name)
        who = f" by {request.by}" if request.by else ""
        note = f": {request.note}" if request.note else ""
        self._book.event(f"gate {gate.name} approved{who}{note}", wave=self._book.wave)
        return ControlResult(
            message=f"gate {gate.name} approved{who}", state=RunState.RUNNING, step=gate.name
        )

    @approve.validator
    def _validate_approve(self, request: ApproveRequest) -> None:
        self._reject_when_finished("approve")
        gate = self._book.gate
        if gate is None or not gate.approval or gate.name in self._approved:
            raise ValueError(f"no fleet gate is waiting for approval (wave {self._book.wave})")
        if gate.pause_until is not None and workflow.now() < gate.pause_until:
            raise ValueError(f"gate {gate.name} is still soaking until {gate.pause_until}")
        if request.gate and request.gate != gate.name:
            raise ValueError(f"gate {request.gate!r} is not waiting; {gate.name!r} is")

    @workflow.update
    def abort(self, request: AbortRequest) -> ControlResult:
        self._abort = request
        if self._body is not None and not self._body.done():
            self._body.cancel()
        return ControlResult(
            message="abort accepted: running rollouts roll back, then the fleet's onFailure "
            f"policy ({self._plan.on_failure}) applies",
            state=RunState.RUNNING, step=self._book.wave,
        )

    @abort.validator
    def _validate_abort(self, request: AbortRequest) -> None:
        self._reject_when_finished("abort")
        if self._abort is not None:
            raise ValueError("the fleet is already being aborted")

    @workflow.query
    def progress(self) -> FleetProgress:
        return self._book.snapshot()

    def _reject_when_finished(self, action: str) -> None:
        if self._book.outcome != FleetOutcome.RUNNING:
            raise ValueError(f"cannot {action}: the fleet is {self._book.outcome.value}")


def _failure_text(failed: ChildWorkflowError) -> str:
    """The child's outcome and reason, from the RolloutResult its failure carries."""
    cause = failed.cause
    if isinstance(cause, ApplicationError):
        for detail in cause.details:
            try:
                result = RolloutResult.model_validate(detail)
            except ValidationError:
                continue
            reason = result.failure.reason.value if result.failure else cause.type
            return f"{reason} (its rollout: {result.outcome.value})"
        return f"{cause.type}: {cause.message}"
    return str(cause or failed)
