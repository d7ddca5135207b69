"""The names that tie a target to its workflows and schedule.

Where it sits: shared by the client side (rollouts.starting, rollouts.schedules, the CLI) and by
UpgradeWorkflow, which starts a rollout under the same ID. One workflow ID per target is the
guard that keeps two rollouts (or a rollout and a teardown) off one target at a time.
"""

from __future__ import annotations

ROLLOUT_ID_PREFIX = "rollout/"
UPGRADE_SCHEDULE_PREFIX = "upgrade/"


def rollout_workflow_id(target_id: str) -> str:
    """`rollout/<cluster>/<namespace>/<name>`: the one ID under which a target may change."""
    return ROLLOUT_ID_PREFIX + target_id


def upgrade_schedule_id(target_id: str) -> str:
    """The ID of a target's upgrade schedule (its runs are `upgrade/<target>-<timestamp>`)."""
    return UPGRADE_SCHEDULE_PREFIX + target_id


FLEET_ID_PREFIX = "fleet/"


def fleet_workflow_id(name: str) -> str:
    """`fleet/<name>`: one run of a fleet at a time; its targets keep their own rollout IDs."""
    return FLEET_ID_PREFIX + name
