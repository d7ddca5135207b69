"""How a rollout's ask reads the cluster workflow's failures: refusal, final failure, ask again."""

from __future__ import annotations

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from activities.cluster import answer_error


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
