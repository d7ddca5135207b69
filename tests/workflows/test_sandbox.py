"""The workflow sandbox our workers run: our data model is imported once, not for every run.

The sandbox re-imports, for every workflow run, each module it does not pass through; `spec`
(pydantic models built at import) and `yaml` re-imported so took 41 % of a busy worker's CPU
samples (py-spy, 50 concurrent rollouts). This module is itself re-imported in the sandbox when
its workflow runs, so what it imports there shows what the sandbox passed through.
"""

from __future__ import annotations

import uuid

import yaml
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

import spec.rollout
from workflows.registry import workflow_runner

HOST_IDS = (id(spec.rollout.RolloutSpec), id(yaml.safe_load))


@workflow.defn(sandboxed=True)
class ImportedModules:
    @workflow.run
    async def run(self) -> list[int]:
        # The objects this module sees inside the sandbox, by identity.
        return [id(spec.rollout.RolloutSpec), id(yaml.safe_load)]


async def test_our_workers_import_the_data_model_once_not_for_every_run(
    temporal_client: Client,
) -> None:
    task_queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=task_queue, workflows=[ImportedModules],
        workflow_runner=workflow_runner(),
    ):
        seen = await temporal_client.execute_workflow(
            ImportedModules.run, id=f"sandbox-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
    assert tuple(seen) == HOST_IDS

