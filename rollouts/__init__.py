"""The Temporal client side of a rollout: start it, observe it, schedule its upgrades.

Where it sits: between the command line (cli/, behind starter.py) and the workflows it drives.
Everything here talks to a Temporal server through a `temporalio.client.Client` and none of it
runs inside a worker, so it may do I/O that `workflows/` must not; `workflows/` never imports it.
See docs/architecture.md ("Layers") for the whole picture.

- `starting`: start a rollout or teardown under the target's workflow ID; `TargetBusy` names the
  run that already holds the target.
- `observing`: progress (the workflow's query plus live activity heartbeats), current details,
  and the RolloutResult of a run whether it succeeded or failed.
- `schedules`: the target's upgrade schedule: create, describe, pause, unpause, trigger, delete.
"""

from rollouts.observing import (
    PendingActivity,
    current_details,
    fetch_progress,
    overlay,
    pending_activities,
    result_of_failure,
    rollout_result,
)
from rollouts.schedules import (
    ScheduleStatus,
    create_upgrade_schedule,
    delete_upgrade_schedule,
    describe_upgrade_schedule,
    pause_upgrade_schedule,
    trigger_upgrade_schedule,
    unpause_upgrade_schedule,
    upgrade_schedule,
)
from rollouts.starting import TargetBusy, start_rollout, start_teardown

__all__ = [
    "PendingActivity",
    "ScheduleStatus",
    "TargetBusy",
    "create_upgrade_schedule",
    "current_details",
    "delete_upgrade_schedule",
    "describe_upgrade_schedule",
    "fetch_progress",
    "overlay",
    "pause_upgrade_schedule",
    "pending_activities",
    "result_of_failure",
    "rollout_result",
    "start_rollout",
    "start_teardown",
    "trigger_upgrade_schedule",
    "unpause_upgrade_schedule",
    "upgrade_schedule",
]
