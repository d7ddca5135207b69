"""From an exception in workflow code to a FailureReport: reason, step, sentence, evidence.

Where it sits: the workflows catch what a step raised and describe it here before deciding on
rollback. Activities report failures as non-retryable ApplicationErrors whose `type` is a
FailureReason value and whose detail is a FailureEvidence (spec/activity_io.py); a retryable
error whose retries ran out carries the reason it stands for in that evidence; timeouts,
cancellation and errors of our own workflow code map to reasons here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    TimeoutError,
)

from spec.activity_io import HEARTBEAT_STEP
from spec.cluster_io import DONE_STEPS, FAILED_STEP
from spec.reasons import FailureReason
from spec.workflow_io import FailureReport, Phase

# An error without a reason of ours (a bug, a foreign error type) still needs one: the phase's.
_PHASE_DEFAULT = {
    Phase.PREFLIGHT: FailureReason.PREFLIGHT,
    Phase.DEPENDENCIES: FailureReason.APPLY_REJECTED,
    Phase.GATEWAY_PROVIDER: FailureReason.HELM_FAILED,
    Phase.NAMESPACE: FailureReason.APPLY_REJECTED,
    Phase.INFRA: FailureReason.HELM_FAILED,
    Phase.MODEL_SERVICE: FailureReason.APPLY_REJECTED,
    Phase.MODEL_LOAD: FailureReason.ROLLOUT_TIMEOUT,
    Phase.VERIFY: FailureReason.VERIFICATION_FAILED,
}
_VALID_REASONS = {reason.value for reason in FailureReason}
# Evidence is for people; a few hundred log lines in the history help nobody.
MAX_EVIDENCE_LIST = 40


class StepFailed(ApplicationError):
    """A failure the workflow itself detected (e.g. verification checks that did not pass)."""

    def __init__(self, reason: FailureReason, message: str, evidence: dict[str, Any]) -> None:
        super().__init__(message, evidence, type=reason.value, non_retryable=True)


def describe_failure(
    error: BaseException, phase: Phase, step: str, abort_reason: str | None = None
) -> FailureReport:
    if isinstance(error, asyncio.CancelledError):
        return FailureReport(
            reason=FailureReason.ABORTED,
            phase=phase,
            step=step,
            message=abort_reason or "the rollout was cancelled",
        )
    cause = _innermost(error)
    if isinstance(cause, TimeoutError):
        reason = (
            FailureReason.MODEL_LOAD_TIMEOUT if phase == Phase.MODEL_LOAD
            else FailureReason.ROLLOUT_TIMEOUT
        )
        kind = cause.type.name if cause.type is not None else "UNSPECIFIED"
        message = f"{step} did not finish within its budget ({kind.lower()} timeout)"
        evidence: dict[str, Any] = {"timeout": kind}
        doing = last_step(cause.last_heartbeat_details)
        if doing is not None:
            # What the step was busy with when the budget ran out (waiting for other rollouts'
            # capacity plans, for a helm operation, ...), as its last heartbeat said.
            message += f"; its last heartbeat: {doing}"
            evidence["lastStep"] = doing
        return FailureReport(
            reason=reason, phase=phase, step=step, message=message, evidence=evidence
        )
    if isinstance(cause, ApplicationError):
        evidence = _evidence(cause.details)
        # An ask of several pieces names the one that failed.
        named_step = evidence.pop(FAILED_STEP, None)
        evidence.pop(DONE_STEPS, None)  # the journal's steps say which pieces were done
        step = named_step if isinstance(named_step, str) else step
        # A retryable error's evidence names what it stands for once retries run out.
        named = next(
            (n for n in (cause.type, evidence.get("reason")) if n in _VALID_REASONS), None
        )
        reason = (
            FailureReason(named)
            if named is not None
            else _PHASE_DEFAULT.get(phase, FailureReason.ROLLOUT_TIMEOUT)
        )
        if cause.type and cause.type not in _VALID_REASONS:
            evidence["errorType"] = cause.type
        return FailureReport(
            reason=reason, phase=phase, step=step, message=cause.message, evidence=evidence
        )
    return FailureReport(
        reason=_PHASE_DEFAULT.get(phase, FailureReason.ROLLOUT_TIMEOUT),
        phase=phase,
        step=step,
        message=str(cause) or type(cause).__name__,
        evidence={"errorType": type(cause).__name__},
    )


def failed_step(error: BaseException) -> str | None:
    """The step `error` names as the one that failed, if it names one (see FAILED_STEP)."""
    step = _ask_evidence(error, FAILED_STEP)
    return step if isinstance(step, str) else None


def done_steps(error: BaseException) -> list[str] | None:
    """The steps an ask whose pieces ran at once made current before it failed (see
    DONE_STEPS); None when it does not say (its pieces ran in order)."""
    done = _ask_evidence(error, DONE_STEPS)
    return [str(step) for step in done] if isinstance(done, list) else None


def _ask_evidence(error: BaseException, key: str) -> Any:
    """One key of the evidence the innermost ApplicationError carries; None without it."""
    cause = _innermost(error)
    if not isinstance(cause, ApplicationError):
        return None
    return _evidence(cause.details).get(key)


def last_step(heartbeat_details: Any) -> str | None:
    """What an activity's last heartbeat said it was doing: its `step` (activities/heartbeat.py
    beats `{"step": ..., ...}`) or a wait's `detail` (WaitProgress); None when it said
    neither."""
    last = heartbeat_details[-1] if heartbeat_details else None
    if not isinstance(last, dict):
        return None
    doing = last.get(HEARTBEAT_STEP) or last.get("detail")
    return doing if isinstance(doing, str) and doing else None


def _innermost(error: BaseException) -> BaseException:
    """The failure under the activity/child wrappers: what actually went wrong."""
    current = error
    while isinstance(current, (ActivityError, ChildWorkflowError)) and current.cause is not None:
        current = current.cause
    if isinstance(current, FailureError) and not isinstance(
        current, (ApplicationError, TimeoutError)
    ) and current.cause is not None:
        return _innermost(current.cause)
    return current


def _evidence(details: Any) -> dict[str, Any]:
    """The first mapping among the error details, with long lists trimmed."""
    for detail in details or ():
        if isinstance(detail, dict):
            return {key: _trim(value) for key, value in detail.items()}
    return {}


def _trim(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_EVIDENCE_LIST:
        return value[-MAX_EVIDENCE_LIST:]
    return value
