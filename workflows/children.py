"""Starting a rollout or fleet as a child that lives on its own.

Where it sits: UpgradeWorkflow (a scheduled upgrade), FleetWorkflow (each target of a wave) and
FleetUpgradeWorkflow (a scheduled fleet) start their runs through `start_detached`. The child
runs under its own well-known ID (the one the CLI uses), on the parent's task queue, and outlives
its parent (ABANDON): cancelling a schedule or a fleet must not cancel a rollout mid-step, whose
own abort rolls back. ALLOW_DUPLICATE: the same ID runs again for every upgrade. A run already
going under that ID raises WorkflowAlreadyStartedError, which each caller reports its own way.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.types import MethodAsyncSingleParam, ParamType, ReturnType, SelfType


async def start_detached(
    run: MethodAsyncSingleParam[SelfType, ParamType, ReturnType],
    arg: ParamType,
    *,
    workflow_id: str,
    summary: str,
) -> workflow.ChildWorkflowHandle[SelfType, ReturnType]:
    """Start `run` (a workflow's run method) with `arg` as a detached child (see above)."""
    return await workflow.start_child_workflow(
        run,
        arg,
        id=workflow_id,
        task_queue=workflow.info().task_queue,
        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=summary,
    )
