"""bench/lib/history.py: the rollout's wait for its shared-pieces ask, read from its history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.common.v1 import ActivityType
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskCompletedEventAttributes,
    ActivityTaskScheduledEventAttributes,
    HistoryEvent,
    WorkflowTaskCompletedEventAttributes,
)
from temporalio.client import WorkflowHistory

from bench.lib.history import shared_pieces_wait_seconds

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def event(
    event_id: int, kind: EventType.ValueType, seconds: float, **attributes: object
) -> HistoryEvent:
    made = HistoryEvent(event_id=event_id, event_type=kind, **attributes)  # type: ignore[arg-type]
    made.event_time.FromDatetime(T0 + timedelta(seconds=seconds))
    return made


def history(activity: str) -> WorkflowHistory:
    """A workflow task (started at 1 s) that schedules `activity`, completed at 3.5 s, then the
    workflow task that reads it, started at 4.25 s."""
    return WorkflowHistory("rollout/t", [
        event(1, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 0.5),
        event(2, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 1.0),
        event(3, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 1.2,
              workflow_task_completed_event_attributes=WorkflowTaskCompletedEventAttributes(
                  scheduled_event_id=1, started_event_id=2)),
        event(4, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, 1.2,
              activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
                  activity_type=ActivityType(name=activity), workflow_task_completed_event_id=3)),
        event(5, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, 1.6),
        event(6, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, 3.5,
              activity_task_completed_event_attributes=ActivityTaskCompletedEventAttributes(
                  scheduled_event_id=4, started_event_id=5)),
        event(7, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 3.5),
        event(8, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 4.25),
    ])


def test_the_wait_runs_from_the_task_that_asked_to_the_task_that_read_the_answer() -> None:
    # Not the activity's own 1.6-3.5 s: the rollout also waited for it to be picked up and
    # for its next workflow task.
    assert shared_pieces_wait_seconds(history("ensure_shared_pieces")) == 3.25


def test_a_rollout_that_asked_nothing_has_no_wait() -> None:
    assert shared_pieces_wait_seconds(history("preflight")) is None
