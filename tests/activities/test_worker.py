"""The activities on a real Temporal worker (dev server, pydantic data converter): inputs and
results cross the wire as the contract says, and a failure reaches the workflow as a
non-retryable ActivityError whose cause names the reason and carries the evidence."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.registry import activities
from helmcli import HELM_ENV
from spec.activity_io import (
    ApplyModelServiceInput,
    ApplyModelServiceResult,
    FailureEvidence,
    PreflightInput,
)
from tests.activities.conftest import REPO, SimCluster
from tests.activities.specs import example, prepared


@workflow.defn(sandboxed=False)
class CallActivity:
    """Run one activity by name, once, and return its result or its failure's type/details."""

    @workflow.run
    async def run(self, name: str, argument: Any) -> dict[str, Any]:
        try:
            result = await workflow.execute_activity(
                name,
                argument,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as error:
            cause = error.cause
            assert isinstance(cause, ApplicationError)
            return {
                "failure": cause.type,
                "non_retryable": cause.non_retryable,
                "details": list(cause.details),
            }
        return {"result": result}


async def call(client: Client, name: str, argument: Any) -> dict[str, Any]:
    queue = f"activities-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CallActivity],
        activities=activities(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        outcome: dict[str, Any] = await client.execute_workflow(
            CallActivity.run, args=[name, argument], id=queue, task_queue=queue
        )
        return outcome


async def test_a_failure_reaches_the_workflow_with_its_reason_and_evidence(
    temporal_client: Client, cluster: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Preflight checks helm before it plans capacity: the pinned one, as the other tests use.
    monkeypatch.setenv(HELM_ENV, str(REPO / ".venv" / "bin" / "helm"))
    spec = example("wide-ep-lws-as-shipped.yaml")
    spec = spec.model_copy(
        update={"target": spec.target.model_copy(update={"kubeconfig": str(cluster.kubeconfig)})}
    )
    outcome = await call(temporal_client, "preflight", PreflightInput(spec=spec))
    assert outcome["failure"] == "InsufficientCapacity" and outcome["non_retryable"]
    evidence = FailureEvidence.from_details(outcome["details"])
    assert evidence is not None
    assert (evidence.data["plan"]["gpus_asked"], evidence.data["plan"]["gpus_available"]) == (
        24,
        16,
    )


async def test_inputs_and_results_cross_the_worker_as_models(
    temporal_client: Client, kube_api: SimCluster
) -> None:
    spec = await prepared(kube_api.kubeconfig, "via-worker")
    first = await call(temporal_client, "apply_model_service", ApplyModelServiceInput(spec=spec))
    second = await call(temporal_client, "apply_model_service", ApplyModelServiceInput(spec=spec))
    created = ApplyModelServiceResult.model_validate(first["result"])
    unchanged = ApplyModelServiceResult.model_validate(second["result"])
    assert created.apply.count("created") == len(created.apply.outcomes)
    assert not unchanged.apply.changed
