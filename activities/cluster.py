"""Activities that reach a cluster's ClusterWorkflow for a rollout or a teardown.

Where it sits: a RolloutWorkflow cannot send an update itself, so its dependencies and gateway
provider phases call `ensure_shared_pieces`, and TeardownWorkflow calls `release_shared_pieces`;
each sends update-with-start to `cluster/<task queue>/<cluster>` (workflows/cluster.py) through
the worker's own Temporal client, so the cluster workflow is started on the first ask and reused
after. The update ID is the ask ID (rollout workflow ID, run ID, phase): an activity retried after
its worker died sends the same update, which Temporal answers once; while the answer takes (a
helm install may take minutes) the activity heartbeats, so a dead worker is noticed and another
one asks again and waits for the same operation.

A refusal (another target uses another version of a piece) and a failed operation come back as
non-retryable errors carrying the cluster workflow's sentence; a cluster workflow that is
continuing as new is asked again after Temporal's back-off.
"""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, FailureError

from activities.heartbeat import heartbeating
from spec.cluster_io import (
    ClusterInput,
    EnsureAnswer,
    EnsureAsk,
    ReleaseAnswer,
    ReleaseAsk,
    cluster_workflow_id,
)
from spec.reasons import FailureReason

A = TypeVar("A", EnsureAnswer, ReleaseAnswer)

CLUSTER_WORKFLOW = "ClusterWorkflow"
# The cluster workflow's own error types (workflows/cluster.py); activities may not import it.
_CONFLICT = "SharedPieceConflict"
_UNANSWERED = "ClusterWorkflowUnanswered"
_REASONS = frozenset(reason.value for reason in FailureReason)


def cluster_workflow(client: Client, cluster: str) -> WithStartWorkflowOperation[Any, Any]:
    """Start the cluster's workflow on this worker's task queue unless it already runs."""
    task_queue = activity.info().task_queue
    return WithStartWorkflowOperation(
        CLUSTER_WORKFLOW,
        ClusterInput(cluster=cluster),
        id=cluster_workflow_id(cluster, task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"shared pieces and GPU reservations of cluster {cluster}",
    )


def answer_error(error: WorkflowUpdateFailedError, what: str) -> ApplicationError:
    """The cluster workflow's failure as this activity's: its type and sentence; retryable
    unless it is a refusal or a named failure of the operation."""
    cause: BaseException | None = error.cause
    deepest: ApplicationError | None = None
    while isinstance(cause, FailureError):
        if isinstance(cause, ApplicationError):
            deepest = cause
        cause = cause.cause
    if deepest is None:
        return ApplicationError(f"{what}: {error.cause}", type=_UNANSWERED)
    if deepest.type == _CONFLICT:
        return ApplicationError(
            f"{what}: {deepest.message}", type=FailureReason.PREFLIGHT.value, non_retryable=True
        )
    # A named failure of the operation (HelmFailed, ...) is final: the cluster workflow's
    # activity already retried it. Anything else (the cluster workflow continuing as new, the
    # server's "UnprocessedUpdate" for an update caught in that moment) is asked again.
    final = deepest.type in _REASONS
    return ApplicationError(
        f"{what}: {deepest.message}", *deepest.details, type=deepest.type or _UNANSWERED,
        non_retryable=final,
    )


async def ask_cluster(
    update: str, ask: EnsureAsk | ReleaseAsk, answer_type: type[A], what: str
) -> A:
    """Send `ask` as the `update` of the cluster's workflow (started if need be) and wait for
    its answer, heartbeating."""
    client = activity.client()
    try:
        answer: A = await heartbeating(
            client.execute_update_with_start_workflow(
                update, ask,
                start_workflow_operation=cluster_workflow(client, ask.target.cluster),
                id=ask.ask_id, result_type=answer_type,
            ),
            f"waiting for the cluster workflow: {what}",
        )
    except WorkflowUpdateFailedError as error:
        raise answer_error(error, what) from None
    return answer


@activity.defn
async def ensure_shared_pieces(ask: EnsureAsk) -> EnsureAnswer:
    """Ask the cluster workflow to make `ask.pieces` current for this target, and wait."""
    answer = await ask_cluster("ensure", ask, EnsureAnswer, "shared pieces")
    for outcome in answer.outcomes:
        activity.logger.info("shared piece %s: %s", outcome.key, outcome.detail)
    return answer


@activity.defn
async def release_shared_pieces(ask: ReleaseAsk) -> ReleaseAnswer:
    """Tell the cluster workflow the target no longer uses its pieces; it removes the ones
    asked for that nobody else uses."""
    return await ask_cluster("release", ask, ReleaseAnswer, "releasing shared pieces")
