"""How a rollout's ask reads the cluster workflow's failures: refusal, final failure, ask again;
how it waits out the server's refusals for now, reading what each refused call left behind."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import pytest
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from activities.cluster import (
    UPDATES_IN_FLIGHT,
    answer_error,
    recorded_error,
    update_with_start,
    when_not_busy,
)
from embedded.temporal import TemporalDevServer
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


async def test_a_refused_update_with_start_leaves_no_unread_error_for_asyncio_to_log(
    temporal_server: TemporalDevServer,
) -> None:
    # The server refuses the call (here: no such namespace; under load: too many updates in
    # flight), and the SDK fails the start operation's handle with the same error. Nobody
    # awaits that handle: unless it is read, asyncio logs "Future exception was never
    # retrieved", with a traceback, when it is collected.
    client = await Client.connect(
        temporal_server.address, namespace=f"nowhere-{uuid.uuid4().hex[:6]}",
        retry_config=RetryConfig(max_retries=0),
    )
    logged: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: logged.append(context))
    try:
        operation: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            "ClusterWorkflow", id="cluster/q/c", task_queue="q",
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        with pytest.raises(RPCError):
            await update_with_start(
                client, operation, "ensure", {}, workflow_id="cluster/q/c", id="a",
                result_type=dict,
            )
        del operation
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert [c.get("message") for c in logged] == []


async def test_a_process_keeps_fewer_updates_in_flight_on_one_workflow_than_the_server_admits(
) -> None:
    # The server refuses an 11th update in flight on one workflow; each refusal is a round trip
    # and a workflow task for nothing. Twenty askers of one process take turns in 8 slots.
    class Server:
        in_flight = most = 0

        async def execute_update_with_start_workflow(self, *_: Any, **__: Any) -> str:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(0.01)
            self.in_flight -= 1
            return "accepted"

    server = Server()

    def operation() -> WithStartWorkflowOperation[Any, Any]:
        return WithStartWorkflowOperation(
            "ClusterWorkflow", id="cluster/q/busy", task_queue="q",
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    answers = await asyncio.gather(*(
        update_with_start(
            server, operation(), "ensure", {}, workflow_id="cluster/q/busy", id=f"ask-{i}",
            result_type=str,
        )
        for i in range(20)
    ))

    assert answers == ["accepted"] * 20
    assert server.most == UPDATES_IN_FLIGHT < 10
