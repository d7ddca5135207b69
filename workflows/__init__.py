"""Deterministic rollout orchestration: Temporal workflows only (no I/O, no Kubernetes imports).

Where it sits: run by worker.py; started, queried and updated from rollouts/ (the Temporal client
side), which this package never imports. Activities are named, not imported (`calls`). See
workflows/README.md for the modules and docs/architecture.md for the phases and layers.

The names below are what the worker, the client side and the CLI use; the workflow modules
import each other by module path.
"""

from workflows import search
from workflows.ids import (
    ROLLOUT_ID_PREFIX,
    UPGRADE_SCHEDULE_PREFIX,
    rollout_workflow_id,
    upgrade_schedule_id,
)
from workflows.plan import RolloutPlan, plan_rollout
from workflows.registry import WORKFLOWS
from workflows.rollout import RolloutWorkflow
from workflows.teardown import TeardownWorkflow
from workflows.upgrade import UpgradeWorkflow

__all__ = [
    "ROLLOUT_ID_PREFIX",
    "UPGRADE_SCHEDULE_PREFIX",
    "WORKFLOWS",
    "RolloutPlan",
    "RolloutWorkflow",
    "TeardownWorkflow",
    "UpgradeWorkflow",
    "plan_rollout",
    "rollout_workflow_id",
    "search",
    "upgrade_schedule_id",
]
