"""Activities that reach a cluster's ClusterWorkflow for a rollout or a teardown.

Where it sits: a RolloutWorkflow cannot send an update itself, so its dependencies and gateway
provider phases call `ensure_shared_pieces`, and TeardownWorkflow calls `release_shared_pieces`;
each sends update-with-start to `cluster/<task queue>/<cluster>` (workflows/cluster.py) through the
worker's own Temporal client, so the cluster workflow is started on the first ask and reused after.
The update only registers the ask and is answered at once (the server lets ten updates be in flight
per workflow, and a helm install takes minutes); the activity then polls the `ask_status` query
(queries add nothing to history) with a short back-off, heartbeating, until the ask's outcome is
recorded; the back-off starts again from its shortest pause whenever one of the cluster workflow's
activities ends in this worker (activities/cluster_news.py). The update ID is the ask ID (rollout
workflow ID, run ID, phase): an activity retried after its worker died sends the same update, which
the cluster workflow answers with where the ask stands; an ask the current run does not know (sent
to a run that continued as new before accepting it) is sent again. The reads of every ask waiting
in this process go to the cluster workflow together, one query at a time
(activities/cluster_reads.py). An ensure ask that would change nothing (every piece checked
moments ago, the target already its user: a warm burst) is answered by the `standing` query and
sends no update at all. Each ask carries the UID of the target cluster's
kube-system namespace (read by the rollout's preflight, or here when it did not: a teardown), so the
cluster workflow tells apart two clusters of one name (workflows/cluster_identity.py); a worker
keeps at most UPDATES_IN_FLIGHT updates in flight on one cluster workflow.

A refusal (another target uses another version of a piece) and a failed operation come back as
non-retryable errors carrying the cluster workflow's sentence; a cluster workflow that is
continuing as new is asked again after Temporal's back-off.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import cluster_news, cluster_reads
from activities.failures import retryable
from activities.heartbeat import heartbeating, run_blocking
from k8s.client import KubeClient, KubeConfigError, KubeError
from spec.activity_io import ObjectRef
from spec.ask_failures import deepest_application_error
from spec.cluster_io import (
    AskError,
    AskStatus,
    ClusterInput,
    EnsureAnswer,
    EnsureAsk,
    ReleaseAnswer,
    ReleaseAsk,
    StandingAsk,
    cluster_workflow_id,
)
from spec.reasons import FailureReason
from spec.rollout import Target

A = TypeVar("A", EnsureAnswer, ReleaseAnswer)
T = TypeVar("T")

CLUSTER_WORKFLOW = "ClusterWorkflow"
# The cluster workflow's own error types (workflows/cluster.py); activities may not import it.
_CONFLICT = "SharedPieceConflict"
_UNANSWERED = "ClusterWorkflowUnanswered"
_REASONS = frozenset(reason.value for reason in FailureReason)
# How soon the ask's outcome is read again: quickly at first (an ask answered from the cluster
# workflow's record settles within a workflow task), then every couple of seconds.
POLL_FIRST = 0.05
POLL_MAX = 2.0
# The server admits only a few updates in flight per workflow, refuses updates and queries
# while the workflow's task is being retried (a task timed out on a busy worker), aborts an
# update or times a query out when the worker is slow to take it, and hands back an update the
# worker did not process (the run continuing as new): all are tried again here, with jitter,
# rather than failing the activity into Temporal's slower back-off.
BUSY_FIRST = 0.05
BUSY_MAX = 1.0
_NOT_READY = "Workflow Task in failed state"
_FOR_NOW = frozenset({
    RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED,
})
_ASK_AGAIN = frozenset({"UnprocessedUpdate", "ClusterWorkflowDraining"})
# The cluster workflow's task deadline. Its tasks compete with every rollout's for one busy
# worker (a burst of 50 rollouts starting took its task past the default 10 s), and while one
# is retried the server refuses every target's asks and reads; so it gets longer than others.
CLUSTER_TASK_TIMEOUT = timedelta(seconds=60)


class Backoff:
    """Pauses of `first` seconds, doubling up to `most`; with jitter, each is 0.5-1.5x its
    length, so askers refused together do not come back together."""

    def __init__(self, first: float, most: float, *, jitter: bool = False) -> None:
        self.first = first
        self.delay = first
        self.most = most
        self.jitter = jitter

    async def pause(self) -> None:
        await asyncio.sleep(self.delay * (0.5 + random.random()) if self.jitter else self.delay)
        self.delay = min(self.delay * 2, self.most)

    async def pause_for_news(self, workflow_id: str) -> None:
        """`pause`, cut short when an activity of `workflow_id` ends in this process
        (activities/cluster_news.py); the next pause is then the first's length again: the
        outcome of what ended is recorded moments later."""
        if await cluster_news.pause(workflow_id, self.delay):
            self.delay = self.first
        else:
            self.delay = min(self.delay * 2, self.most)


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
        task_timeout=CLUSTER_TASK_TIMEOUT,
    )


# At most this many of this process's updates in flight on one cluster workflow. The server
# admits 10 per workflow and refuses the rest (ResourceExhausted): fifty warm rollouts of one
# worker sent hundreds of updates it refused, each a round trip retried by the SDK and by
# `when_not_busy`, while workflow tasks went to waste ("Workflow task not found") and the
# cluster workflow's tasks took up to 9 s. Updates here are answered at once, so the wait for a
# slot is short.
UPDATES_IN_FLIGHT = 8
_SLOTS: dict[str, asyncio.Semaphore] = {}


def update_slot(workflow_id: str) -> asyncio.Semaphore:
    """Held while an update of this process is in flight on `workflow_id`."""
    return _SLOTS.setdefault(workflow_id, asyncio.Semaphore(UPDATES_IN_FLIGHT))


async def update_with_start(
    client: Client, operation: WithStartWorkflowOperation[Any, Any], update: str, arg: object,
    *, workflow_id: str, id: str, result_type: type[T],
) -> T:
    """Send `update` with `arg` to `workflow_id`, starting it through `operation` unless it
    runs; at most UPDATES_IN_FLIGHT at once from this process."""
    async with update_slot(workflow_id):
        try:
            answer: T = await client.execute_update_with_start_workflow(
                update, arg, start_workflow_operation=operation, id=id, result_type=result_type
            )
        except Exception:
            await _read_start_outcome(operation)
            raise
    return answer


async def _read_start_outcome(operation: WithStartWorkflowOperation[Any, Any]) -> None:
    """Read a failed call's start outcome. The SDK fails the operation's handle with the call's
    error too, and asyncio logs an error nobody read, with its traceback, when the operation is
    collected: 130 of them in one burst of fifty rollouts whose updates the server refused for
    now (retried, and then answered)."""
    reading = asyncio.ensure_future(operation.workflow_handle())
    await asyncio.sleep(0)  # one step: a handle already failed (or started) is read now
    if not reading.done():
        reading.cancel()  # failed before the RPC: the SDK never settles this handle
    elif not reading.cancelled():
        reading.exception()


def unanswered(message: str) -> ApplicationError:
    """Asked again; should the cluster workflow stay silent to the end of the asker's budget,
    that budget is what ran out (not the phase's default reason, e.g. ApplyRejected)."""
    return retryable(_UNANSWERED, message, FailureReason.ROLLOUT_TIMEOUT)


def answer_error(error: WorkflowUpdateFailedError, what: str) -> ApplicationError:
    """The cluster workflow's failure as this activity's: its type and sentence; retryable
    unless it is a refusal or a named failure of the operation."""
    deepest = deepest_application_error(error.cause)
    if deepest is None:
        return unanswered(f"{what}: {error.cause}")
    # A named failure of the operation (HelmFailed, ...) is final: the cluster workflow's
    # activity already retried it. Anything else (the cluster workflow continuing as new, the
    # server's "UnprocessedUpdate" for an update caught in that moment) is asked again.
    return recorded_error(
        AskError(
            type=deepest.type or _UNANSWERED, message=deepest.message,
            non_retryable=deepest.type in _REASONS or deepest.type == _CONFLICT,
            details=[d for d in deepest.details if isinstance(d, dict)],
        ),
        what,
    )


def recorded_error(error: AskError, what: str) -> ApplicationError:
    """The activity's error for a failure the cluster workflow recorded or sent back: a refusal
    is a preflight failure; the rest keep their type, sentence and evidence."""
    if error.type == _CONFLICT:
        return ApplicationError(
            f"{what}: {error.message}", type=FailureReason.PREFLIGHT.value, non_retryable=True
        )
    return ApplicationError(
        f"{what}: {error.message}", *error.evidence(), type=error.type,
        non_retryable=error.non_retryable,
    )


async def ask_cluster(
    update: str, ask: EnsureAsk | ReleaseAsk, answer_type: type[A], what: str
) -> A:
    """Send `ask` as the `update` of the cluster's workflow (started if need be) and wait for
    its outcome, heartbeating."""
    status = await heartbeating(
        settled(activity.client(), update, ask, what), f"waiting for the cluster workflow: {what}"
    )
    if status.error is not None:
        raise recorded_error(status.error, what)
    answer = status.ensured if answer_type is EnsureAnswer else status.released
    if not isinstance(answer, answer_type):
        raise unanswered(f"{what}: the cluster workflow answered {status}")
    return answer


async def settled(client: Client, update: str, ask: EnsureAsk | ReleaseAsk, what: str) -> AskStatus:
    """Send the ask, then read its status until it has an outcome; send it again whenever the
    cluster workflow's current run does not know it."""
    status = await send(client, update, ask, what)
    workflow_id = cluster_workflow_id(ask.target.cluster, activity.info().task_queue)
    backoff = Backoff(POLL_FIRST, POLL_MAX)
    while not status.settled:
        await backoff.pause_for_news(workflow_id)
        try:
            status = await cluster_reads.reader(client, workflow_id).status(ask.ask_id)
        except (RPCError, WorkflowQueryFailedError) as error:
            # A run continuing as new, or its task being retried: read again on the next turn.
            activity.logger.info("ask status not readable yet: %s", error)
            continue
        if status.state == "unknown":
            status = await send(client, update, ask, what)
    return status


async def send(client: Client, update: str, ask: EnsureAsk | ReleaseAsk, what: str) -> AskStatus:
    """Send `ask` as the `update` (update ID = ask ID): answered at once with where it stands."""
    try:
        return await when_not_busy(
            lambda: update_with_start(
                client, cluster_workflow(client, ask.target.cluster), update, ask,
                workflow_id=cluster_workflow_id(ask.target.cluster, activity.info().task_queue),
                id=ask.ask_id, result_type=AskStatus,
            )
        )
    except WorkflowUpdateFailedError as error:
        raise answer_error(error, what) from None


def _busy(error: BaseException | None) -> bool:
    """The server refused for now: too many updates in flight on the workflow, or its task is
    being retried."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, RPCError) and (
            error.status in _FOR_NOW
            or (error.status == RPCStatusCode.FAILED_PRECONDITION and _NOT_READY in str(error))
        ):
            return True
        if isinstance(error, WorkflowUpdateFailedError):
            deepest = deepest_application_error(error.cause)
            return deepest is not None and deepest.type in _ASK_AGAIN
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


async def when_not_busy(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, called again while the server says too many updates are in flight or the
    workflow's task is being retried (a new operation each time: an update-with-start operation
    is used once). The activity's heartbeat and budget bound the wait."""
    backoff = Backoff(BUSY_FIRST, BUSY_MAX, jitter=True)
    while True:
        try:
            return await call()
        except Exception as error:
            if not _busy(error):
                raise
        await backoff.pause()


async def already_current(client: Client, ask: EnsureAsk) -> EnsureAnswer | None:
    """The answer to `ask` read by query, when it would change nothing (see the cluster
    workflow's `standing`); while an operation on one of its pieces runs, read again after it.
    None: send the ask (also when the cluster workflow does not run yet, or cannot be read)."""
    workflow_id = cluster_workflow_id(ask.target.cluster, activity.info().task_queue)
    backoff = Backoff(POLL_FIRST, POLL_MAX)
    while True:
        try:
            found = await cluster_reads.reader(client, workflow_id).standing(
                StandingAsk(ask=ask, now=datetime.now(UTC))
            )
        except (RPCError, WorkflowQueryFailedError) as error:
            activity.logger.info("cluster workflow not read, asking: %s", error)
            return None
        if not found.in_flight:
            return found.answer
        await backoff.pause_for_news(workflow_id)


def cluster_uid_of(kube: KubeClient) -> str:
    """Which cluster `kube` reaches: the UID of its kube-system namespace, which lives as long as
    the cluster (one deleted and created again under the same name has a new one)."""
    found = kube.get(ObjectRef(api_version="v1", kind="Namespace", name="kube-system")) or {}
    return str((found.get("metadata") or {}).get("uid") or "")


async def read_cluster_uid(kube: KubeClient) -> str:
    """`cluster_uid_of`, or "" when it cannot be read (no permission to get kube-system, the
    cluster unreachable): the cluster workflow then takes its records as this cluster's, as it
    did before it knew UIDs, and the ask's own work meets the trouble and reports it."""
    try:
        return await run_blocking(functools.partial(cluster_uid_of, kube), "cluster identity")
    except KubeError as error:
        activity.logger.info("cluster identity not read: %s", error)
        return ""


async def cluster_uid(target: Target, known: str = "") -> str:
    """`known` (read by the rollout's preflight), else `read_cluster_uid` through a client of
    the target's own ("" when none can be built)."""
    if known:
        return known
    try:
        kube = KubeClient.for_target(target)
    except KubeConfigError as error:
        activity.logger.info("cluster identity not read: %s", error)
        return ""
    try:
        return await read_cluster_uid(kube)
    finally:
        kube.close()


@activity.defn
async def ensure_shared_pieces(ask: EnsureAsk) -> EnsureAnswer:
    """Ask the cluster workflow to make `ask.pieces` current for this target, and wait. A warm
    burst (every piece checked moments ago, every target already a user) is answered by query:
    fifty updates at once met the server's limit of updates in flight on one workflow."""
    ask = ask.model_copy(update={"cluster_uid": await cluster_uid(ask.target, ask.cluster_uid)})
    answer = await heartbeating(
        already_current(activity.client(), ask), "reading the cluster workflow: shared pieces"
    ) or await ask_cluster("ensure", ask, EnsureAnswer, "shared pieces")
    for outcome in answer.outcomes:
        activity.logger.info("shared piece %s: %s", outcome.key, outcome.detail)
    return answer


@activity.defn
async def release_shared_pieces(ask: ReleaseAsk) -> ReleaseAnswer:
    """Tell the cluster workflow the target no longer uses its pieces; it removes the ones
    asked for that nobody else uses."""
    ask = ask.model_copy(update={"cluster_uid": await cluster_uid(ask.target, ask.cluster_uid)})
    return await ask_cluster("release", ask, ReleaseAnswer, "releasing shared pieces")
