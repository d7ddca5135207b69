"""The workflows this project's workers run, and the sandbox they run in.

Where it sits: worker.py registers every class listed here in `workflow_runner()`'s sandbox (and
the replay tests replay stored histories against the same list and sandbox). Imported by the
worker, the tests and the benches, never by workflow code.
"""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

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

# Imported once by the worker instead of again for every workflow run. The sandbox re-imports
# every module that is not passed through when a run starts; `workflows/__init__.py` and the
# pure modules import `spec` (its pydantic models are built at import) and `yaml`, and that
# took 41 % of a busy worker's CPU samples (py-spy, 50 concurrent rollouts). Both are
# deterministic data and parsing code with no state a run could change.
PASSED_THROUGH = ("spec", "yaml")


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every worker and replayer of ours runs the workflows in."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    )
