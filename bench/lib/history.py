"""What a rollout's own history says about its wait for the shared pieces.

Where it sits: read by bench/concurrency.py after each batch. The rollout's journal shows each
shared piece over the time the cluster workflow spent on it (an answer "already current" from a
check moments ago took none), so the dependencies phase it reports can be 0 s while the rollout
waited for the answer. The wait is read here from the rollout's history instead: from the workflow
task that sent the ask (the activity `ensure_shared_pieces`; dependencies and gateway provider are
asked together) to the workflow task that read its answer, on the server's clock.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

ASK_ACTIVITY = "ensure_shared_pieces"


def _seconds(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def shared_pieces_wait_seconds(history: WorkflowHistory) -> float | None:
    """Seconds the rollout waited for its shared-pieces ask(s), summed; None if it sent none."""
    events = list(history.events)
    by_id = {event.event_id: event for event in events}
    total, asked = 0.0, False
    for index, event in enumerate(events):
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            continue
        scheduled = by_id[event.activity_task_completed_event_attributes.scheduled_event_id]
        attributes = scheduled.activity_task_scheduled_event_attributes
        if attributes.activity_type.name != ASK_ACTIVITY:
            continue
        sent_by = by_id[attributes.workflow_task_completed_event_id]
        began = by_id[sent_by.workflow_task_completed_event_attributes.started_event_id]
        read = next(
            later for later in events[index:]
            if later.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        )
        total += _seconds(read) - _seconds(began)
        asked = True
    return total if asked else None
