"""How a rollout's ask reads the cluster workflow's failures: refusal, final failure, ask again;
and how it waits out the server's refusals for now."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.service import RPCError, RPCStatusCode

from activities.cluster import answer_error, recorded_error, when_not_busy
from spec.cluster_io import AskError


def failed(cause: BaseException) -> WorkflowUpdateFailedError:
    return WorkflowUpdateFailedError(cause)


def test_a_version_conflict_is_a_final_refusal_with_the_sentence() -> None:
    error = answer_error(
        failed(ApplicationError("target a uses v1, this asks v2", type="SharedPieceConflict")),
        "shared pieces",
    )
    assert error.non_retryable and error.type == "PreflightFailed"
    assert error.message == "shared pieces: target a uses v1, this asks v2"


def test_a_named_failure_of_the_operation_is_final() -> None:
    helm = ApplicationError("helm upgrade --install lws failed", type="HelmFailed")
    activity = ActivityError(
        "activity error", scheduled_event_id=1, started_event_id=2, identity="w",
        activity_type="helm_upgrade_install", activity_id="1", retry_state=RetryState.TIMEOUT,
    )
    activity.__cause__ = helm
    error = answer_error(failed(activity), "shared pieces")
    assert error.non_retryable and error.type == "HelmFailed"


def test_an_update_caught_by_continue_as_new_is_asked_again() -> None:
    for cause in (
        ApplicationError("Workflow Update is rejected because it wasn't processed by worker",
                         type="UnprocessedUpdate"),
        ApplicationError("the cluster workflow is continuing as new; ask again",
                         type="ClusterWorkflowDraining"),
    ):
        assert not answer_error(failed(cause), "holding capacity").non_retryable


async def test_a_refusal_for_now_is_tried_again_and_anything_else_is_raised() -> None:
    """Too many updates in flight, or the cluster workflow's task being retried: the server says
    so, and the ask tries again; any other error is the activity's."""
    refusals: list[Exception] = [
        RPCError("limit on number of concurrent in-flight updates has been reached (10)",
                 RPCStatusCode.RESOURCE_EXHAUSTED, b""),
        RPCError("Unable to query workflow due to Workflow Task in failed state.",
                 RPCStatusCode.FAILED_PRECONDITION, b""),
        RPCError("query timed out before a worker could process it",
                 RPCStatusCode.DEADLINE_EXCEEDED, b""),
        RPCError("workflow update was aborted", RPCStatusCode.UNAVAILABLE, b""),
        failed(ApplicationError("Workflow Update is rejected because it wasn't processed by "
                                "worker", type="UnprocessedUpdate")),
    ]
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if refusals:
            raise refusals.pop(0)
        return "answered"

    assert await when_not_busy(call) == "answered" and calls == 6

    async def broken() -> str:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")

    with pytest.raises(RPCError, match="not found"):
        await when_not_busy(broken)

    async def refused() -> str:
        raise failed(ApplicationError("target a uses v1", type="SharedPieceConflict"))

    with pytest.raises(WorkflowUpdateFailedError):
        await when_not_busy(refused)


def test_a_recorded_failure_keeps_its_type_evidence_and_finality() -> None:
    recorded = AskError(
        type="HelmFailed", message="helm upgrade --install lws failed", non_retryable=True,
        details=[{"stderr": "boom"}],
    )
    error = recorded_error(recorded, "shared pieces")
    assert error.non_retryable and error.type == "HelmFailed"
    assert error.message == "shared pieces: helm upgrade --install lws failed"
    assert list(error.details) == [{"stderr": "boom"}]
    refusal = recorded_error(
        AskError(type="SharedPieceConflict", message="target a uses v1"), "shared pieces"
    )
    assert refusal.non_retryable and refusal.type == "PreflightFailed"


def test_a_recorded_failure_of_one_piece_names_its_step_in_the_evidence() -> None:
    recorded = AskError(
        type="HelmFailed", message="helm upgrade --install lws failed", non_retryable=True,
        details=[{"stderr": "boom"}, {"more": 1}], step="lws-controller",
    )
    error = recorded_error(recorded, "shared pieces")
    assert list(error.details) == [{"stderr": "boom", "failedStep": "lws-controller"}, {"more": 1}]
    bare = recorded_error(recorded.model_copy(update={"details": []}), "shared pieces")
    assert list(bare.details) == [{"failedStep": "lws-controller"}]


def test_a_cluster_workflow_that_never_answers_is_asked_again_then_a_timeout() -> None:
    # No application error under the update's failure: nothing says what went wrong.
    error = answer_error(failed(RuntimeError("update lost")), "shared pieces")
    assert not error.non_retryable
    assert error.type == "ClusterWorkflowUnanswered"
    # Should the last attempt end so, the budget ran out, not the phase's default reason.
    assert error.details[0]["reason"] == "RolloutTimeout"
