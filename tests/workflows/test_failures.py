"""How a failure is named: activity reasons and evidence, timeouts, aborts, foreign errors."""

from __future__ import annotations

import asyncio

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from activities.failures import api_failure
from activities.helm import HELM_TRANSIENT, helm_failure
from helmcli import HelmCommandFailed, HelmRun
from k8s import KubeError
from spec.reasons import FailureReason
from spec.workflow_io import Phase
from workflows.failures import MAX_EVIDENCE_LIST, describe_failure


def activity_error(cause: BaseException) -> ActivityError:
    error = ActivityError(
        "activity failed", scheduled_event_id=5, started_event_id=6, identity="worker",
        activity_type="wait_for_model_load", activity_id="7",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    error.__cause__ = cause
    return error


def test_an_activity_reason_and_its_evidence_are_kept() -> None:
    lines = [f"line {i}" for i in range(100)]
    cause = ApplicationError(
        "decode pod crash loops", {"reason": "CrashLoop", "message": "m", "log_lines": lines},
        type=FailureReason.CRASH_LOOP.value, non_retryable=True,
    )
    report = describe_failure(activity_error(cause), Phase.MODEL_LOAD, "model-load/decode")
    assert report.reason == FailureReason.CRASH_LOOP
    assert report.message == "decode pod crash loops"
    assert report.step == "model-load/decode"
    assert report.evidence["log_lines"] == lines[-MAX_EVIDENCE_LIST:]


def test_an_unknown_error_type_falls_back_to_the_phase_reason_and_names_the_type() -> None:
    cause = ApplicationError("helm said no", type="HelmCommandError")
    report = describe_failure(activity_error(cause), Phase.INFRA, "infra")
    assert report.reason == FailureReason.HELM_FAILED
    assert report.evidence["errorType"] == "HelmCommandError"


def test_a_retryable_error_whose_retries_ran_out_ends_as_the_reason_it_stands_for() -> None:
    # The CI run of stop 19: helm's 500s through the whole dependencies budget were reported
    # as that phase's default, ApplyRejected, although no object was rejected.
    cause = helm_failure(HelmCommandFailed("helm upgrade lws", ["upgrade"], HelmRun(
        1, "", "Error: failed to create: clustersim injected fault 62ad (500 InternalError)"
    )))
    assert not cause.non_retryable
    report = describe_failure(activity_error(cause), Phase.DEPENDENCIES, "dependencies/lws")
    assert report.reason == FailureReason.HELM_FAILED
    assert "(500 InternalError)" in report.message
    assert report.evidence["errorType"] == HELM_TRANSIENT
    busy = {"kind": "Status", "reason": "ServiceUnavailable", "message": "try later"}
    unreachable = api_failure(KubeError(503, "HTTP 503", busy))
    report = describe_failure(activity_error(unreachable), Phase.NAMESPACE, "namespace")
    assert report.reason == FailureReason.CLUSTER_UNREACHABLE


def test_a_timeout_in_model_load_is_the_model_load_budget() -> None:
    cause = TimeoutError("timed out", type=TimeoutType.SCHEDULE_TO_CLOSE, last_heartbeat_details=[])
    report = describe_failure(activity_error(cause), Phase.MODEL_LOAD, "model-load/prefill")
    assert report.reason == FailureReason.MODEL_LOAD_TIMEOUT
    assert "schedule_to_close" in report.message


def test_a_timeout_says_what_the_step_last_heartbeated() -> None:
    # A hold-capacity that ran out of budget in the planning turn said only "did not finish".
    beat = {"step": "waiting for other capacity plans"}
    cause = TimeoutError(
        "timed out", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[beat]
    )
    report = describe_failure(activity_error(cause), Phase.PREFLIGHT, "hold-capacity")
    assert report.reason == FailureReason.ROLLOUT_TIMEOUT
    assert report.message == (
        "hold-capacity did not finish within its budget (start_to_close timeout); "
        "its last heartbeat: waiting for other capacity plans"
    )
    assert report.evidence == {
        "timeout": "START_TO_CLOSE", "lastStep": "waiting for other capacity plans"
    }


def test_a_wait_out_of_budget_says_the_detail_it_last_heartbeated() -> None:
    beat = {"detail": "Gateway infra-wide-ep-inference-gateway not Programmed yet"}
    cause = TimeoutError("timed out", type=TimeoutType.HEARTBEAT, last_heartbeat_details=[beat])
    report = describe_failure(activity_error(cause), Phase.INFRA, "gateway-programmed")
    assert report.message.endswith(
        "; its last heartbeat: Gateway infra-wide-ep-inference-gateway not Programmed yet"
    )


def test_a_timeout_without_a_step_heartbeat_says_only_the_timeout() -> None:
    for details in ([], [{"pods": []}], ["text"], [{"step": "", "detail": ""}]):
        cause = TimeoutError(
            "timed out", type=TimeoutType.HEARTBEAT, last_heartbeat_details=details
        )
        report = describe_failure(activity_error(cause), Phase.INFRA, "infra")
        assert report.message == "infra did not finish within its budget (heartbeat timeout)"
        assert report.evidence == {"timeout": "HEARTBEAT"}


def test_cancellation_is_an_abort_with_who_and_why() -> None:
    report = describe_failure(
        asyncio.CancelledError(), Phase.GATE, "decode/step-1", "aborted by dan: bad canary"
    )
    assert report.reason == FailureReason.ABORTED
    assert report.message == "aborted by dan: bad canary"
