"""Client side: read a rollout's progress and result as a person or a script wants them.

Where it sits: the CLI's `status`/`watch` and the tests call these. Progress is the workflow's
own `progress` query plus the live heartbeat details of its running activities, read with
`describe()` (pending_activities[].heartbeat_details): the workflow cannot see heartbeats, and
splitting long waits into short activity calls just to surface them would fill the history. So a
ten-minute model load is one activity in the history, and its pods' weight-loading percentages
still show up here while it runs.

A rollout that failed ends as a failed workflow whose ApplicationError carries the RolloutResult
as its detail; `rollout_result` returns it either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from spec.activity_io import ModelLoadProgress, WaitProgress
from spec.workflow_io import Progress, RoleProgress, RolloutResult


@dataclass(frozen=True)
class PendingActivity:
    """A running (or retrying) activity of a workflow, as describe() reports it."""

    activity_type: str
    attempt: int
    heartbeat: Any
    last_failure: str | None


async def pending_activities(handle: WorkflowHandle[Any, Any]) -> list[PendingActivity]:
    description = await handle.describe()
    converter = description.data_converter
    pending = []
    for info in description.raw_description.pending_activities:
        heartbeat: Any = None
        if info.HasField("heartbeat_details") and info.heartbeat_details.payloads:
            values = await converter.decode(info.heartbeat_details.payloads)
            heartbeat = values[0] if len(values) == 1 else values
        failure = info.last_failure.message if info.HasField("last_failure") else None
        pending.append(
            PendingActivity(
                activity_type=info.activity_type.name,
                attempt=info.attempt,
                heartbeat=heartbeat,
                last_failure=failure or None,
            )
        )
    return pending


async def fetch_progress(handle: WorkflowHandle[Any, Any]) -> Progress:
    """The `progress` query with the running activities' heartbeats laid over it."""
    progress: Progress = await handle.query("progress", result_type=Progress)
    return overlay(progress, await pending_activities(handle))


def overlay(progress: Progress, pending: Sequence[PendingActivity]) -> Progress:
    """Put live figures on a progress snapshot: per-role pods serving and weight loading from a
    running model-load wait, and the latest wait detail or retry failure as the diagnosis."""
    if not pending:
        return progress
    roles = {role.role: role for role in progress.roles}
    live: dict[str, Any] = {}
    diagnosis = progress.diagnosis
    for activity in pending:
        live[activity.activity_type] = {
            "attempt": activity.attempt,
            "heartbeat": activity.heartbeat,
            "lastFailure": activity.last_failure,
        }
        if activity.last_failure and diagnosis is None:
            diagnosis = f"{activity.activity_type} retrying: {activity.last_failure}"
        loading = _model_load(activity.heartbeat)
        if loading is not None and loading.role in roles:
            roles[loading.role] = _with_load(roles[loading.role], loading)
            if diagnosis is None:
                diagnosis = loading.summary()
        waiting = _wait(activity.heartbeat)
        if waiting is not None and waiting.detail and diagnosis is None:
            diagnosis = waiting.detail
    return progress.model_copy(
        update={"roles": list(roles.values()), "diagnosis": diagnosis, "live": live}
    )


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """What the Temporal UI shows as the run's current details (phase, step, gate, diagnosis)."""
    metadata: WorkflowMetadata = await handle.query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return metadata.current_details


async def rollout_result(handle: WorkflowHandle[Any, RolloutResult]) -> RolloutResult:
    """The RolloutResult, whether the rollout succeeded or failed (see `outcome`).

    A run that ended without one (terminated, timed out) re-raises its WorkflowFailureError.
    """
    try:
        return await handle.result()
    except WorkflowFailureError as failed:
        result = result_of_failure(failed)
        if result is None:
            raise
        return result


def result_of_failure(failed: WorkflowFailureError) -> RolloutResult | None:
    cause = failed.cause
    if not isinstance(cause, ApplicationError):
        return None
    for detail in cause.details:
        try:
            return RolloutResult.model_validate(detail)
        except ValidationError:
            continue
    return None


def _model_load(heartbeat: Any) -> ModelLoadProgress | None:
    if not isinstance(heartbeat, dict) or "pods" not in heartbeat:
        return None
    try:
        return ModelLoadProgress.model_validate(heartbeat)
    except ValidationError:
        return None


def _wait(heartbeat: Any) -> WaitProgress | None:
    if not isinstance(heartbeat, dict) or "detail" not in heartbeat or "pods" in heartbeat:
        return None
    try:
        return WaitProgress.model_validate(heartbeat)
    except ValidationError:
        return None


def _with_load(role: RoleProgress, loading: ModelLoadProgress) -> RoleProgress:
    percents = [p.weights_percent for p in loading.pods if p.weights_percent is not None]
    ready = sum(1 for p in loading.pods if p.phase in ("serving-probe", "serving"))
    return role.model_copy(
        update={
            "pods_loaded": loading.serving,
            "pods_ready": max(ready, loading.serving),
            "load_percent": sum(percents) / len(percents) if percents else role.load_percent,
        }
    )
