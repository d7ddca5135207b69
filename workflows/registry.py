"""The workflows this project's workers run.

Where it sits: worker.py registers every class listed here (and the replay tests replay stored
histories against the same list). Imported by the worker and the tests, never by workflow code.
"""

from workflows.cluster import ClusterWorkflow
from workflows.fleet import FleetWorkflow
from workflows.fleet_schedule import FleetUpgradeWorkflow
from workflows.rollout import RolloutWorkflow
from workflows.teardown import TeardownWorkflow
from workflows.upgrade import UpgradeWorkflow

WORKFLOWS: list[type] = [
    RolloutWorkflow, UpgradeWorkflow, TeardownWorkflow, ClusterWorkflow, FleetWorkflow,
    FleetUpgradeWorkflow,
]
