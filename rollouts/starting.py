"""Client side: start a rollout or teardown of a target, at most one at a time per target.

Where it sits: in rollouts/, the Temporal client side; the CLI's `apply`, `rollback`,
`teardown` and `demo` and the tests call these; UpgradeWorkflow applies the same
guard from inside Temporal (a child workflow under the same ID). The guard is the workflow ID,
`rollout/<cluster>/<namespace>/<name>`, started with id_conflict_policy FAIL (a running workflow
with that ID refuses the start, whoever started it) and id_reuse_policy ALLOW_DUPLICATE (once the
previous run closed, whatever its outcome, the target can be rolled out again).
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from spec import RolloutSpec
from spec.workflow_io import (
    Phase,
    RolloutInput,
    RolloutResult,
    TeardownInput,
    TeardownResult,
)
from workflows import search
from workflows.ids import rollout_workflow_id
from workflows.rollout import RolloutWorkflow
from workflows.teardown import TeardownWorkflow


class TargetBusy(Exception):
    """Another rollout or teardown of the target is running; `workflow_id`/`run_id` name it."""

    def __init__(self, target: str, workflow_id: str, run_id: str | None) -> None:
        self.target = target
        self.workflow_id = workflow_id
        self.run_id = run_id
        run = f" (run {run_id})" if run_id else ""
        super().__init__(
            f"a rollout of {target} is already running: workflow {workflow_id}{run}; "
            "wait for it, or abort it, before starting another"
        )


async def start_rollout(
    client: Client,
    spec: RolloutSpec,
    *,
    task_queue: str,
    requested_by: str = "cli",
    reason: str = "",
) -> WorkflowHandle[RolloutWorkflow, RolloutResult]:
    """Start RolloutWorkflow for `spec`'s target, or raise TargetBusy naming the running one."""
    workflow_id = rollout_workflow_id(spec.target_id)
    try:
        return await client.start_workflow(
            RolloutWorkflow.run,
            RolloutInput(spec=spec, requested_by=requested_by, reason=reason),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=_attributes(spec, Phase.PREFLIGHT),
            static_summary=f"rollout of {spec.target_id}",
        )
    except WorkflowAlreadyStartedError as running:
        raise TargetBusy(spec.target_id, running.workflow_id, running.run_id) from None


async def start_teardown(
    client: Client, request: TeardownInput, *, task_queue: str
) -> WorkflowHandle[TeardownWorkflow, TeardownResult]:
    """Start TeardownWorkflow under the target's ID (so never beside a rollout of it)."""
    spec = request.spec
    workflow_id = rollout_workflow_id(spec.target_id)
    try:
        return await client.start_workflow(
            TeardownWorkflow.run,
            request,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=_attributes(spec, Phase.TEARDOWN),
            static_summary=f"teardown of {spec.target_id}",
        )
    except WorkflowAlreadyStartedError as running:
        raise TargetBusy(spec.target_id, running.workflow_id, running.run_id) from None


def _attributes(spec: RolloutSpec, phase: Phase) -> TypedSearchAttributes:
    return search.initial(
        spec.target_id, spec.model_service.model_name, spec.model_service.vllm_image, phase.value
    )
