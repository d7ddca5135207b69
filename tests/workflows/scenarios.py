"""Shared steps of the workflow tests: run a rollout to its result, install a target first,
poll the progress query, and the faults the rollback tests inject."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle

from rollouts.observing import rollout_result
from rollouts.starting import start_rollout
from spec.reasons import FailureReason
from spec.rollout import RolloutSpec
from spec.workflow_io import Outcome, Progress, RolloutResult
from tests.workflows.fakes import FakeCluster, Fault
from tests.workflows.specs import demo_spec
from workflows.rollout import RolloutWorkflow

WAIT = 30.0


async def run_rollout(client: Client, spec: RolloutSpec, task_queue: str) -> RolloutResult:
    handle = await start_rollout(client, spec, task_queue=task_queue)
    return await asyncio.wait_for(rollout_result(handle), WAIT)


async def installed(client: Client, cluster: FakeCluster, task_queue: str, name: str,
                    *changes: Any) -> RolloutSpec:
    """Install the demo spec as `name`, so the test can upgrade it."""
    spec = demo_spec(name, *changes)
    result = await run_rollout(client, spec, task_queue)
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    cluster.calls.clear()
    cluster.inputs.clear()
    return spec


async def until(
    probe: Callable[[], Awaitable[Progress]],
    accept: Callable[[Progress], bool],
    timeout: float = WAIT,
) -> Progress:
    """Poll the progress query until `accept` holds (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        progress = await probe()
        if accept(progress):
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting; last progress: {progress}")
        await asyncio.sleep(0.1)


def query(handle: WorkflowHandle[Any, Any]) -> Callable[[], Awaitable[Progress]]:
    async def probe() -> Progress:
        progress: Progress = await handle.query(RolloutWorkflow.progress)
        return progress

    return probe


def crash_loop_on(bad_image: str) -> Fault:
    return Fault(
        "wait_for_model_load", FailureReason.CRASH_LOOP,
        "decode pod ms-wide-ep-llm-d-modelservice-decode-0 is in CrashLoopBackOff",
        when=lambda cluster, arg: cluster.image(arg.role) == bad_image,
        log_lines=["torch.OutOfMemoryError: CUDA out of memory"],
    )
