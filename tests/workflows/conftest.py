"""Fixtures of the workflow tests: an in-process worker on the session's Temporal dev server,
with the stand-in activities of tests/workflows/fakes.py over a fresh fake cluster per test, and,
for the end-to-end modules, a module-wide worker with the real activities."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.registry import activities
from embedded.temporal import TemporalDevServer
from tests.workflows.e2e import worker_environment
from tests.workflows.fakes import FakeCluster
from worker import use_blocking_threads
from workflows.registry import WORKFLOWS, workflow_runner


@pytest_asyncio.fixture(loop_scope="session")
async def fake_cluster() -> FakeCluster:
    return FakeCluster()


@pytest_asyncio.fixture(loop_scope="session")
async def fake_worker(
    temporal_client: Client, fake_cluster: FakeCluster
) -> AsyncIterator[str]:
    """The task queue of a worker running our workflows with the fake activities."""
    task_queue = f"workflow-test-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(),
        activities=fake_cluster.activities(),
    ):
        yield task_queue


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def client(temporal_server: TemporalDevServer) -> Client:
    """A client for one end-to-end module (the session's `temporal_client` is per test)."""
    return await Client.connect(
        temporal_server.address,
        namespace=temporal_server.namespace,
        data_converter=pydantic_data_converter,
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def real_worker(client: Client, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """An in-process worker with the real activities (the worker's blocking threads); the HF
    token in its environment."""
    use_blocking_threads(asyncio.get_running_loop())
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    task_queue = f"{module}-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_TOKEN", "LLMD_HELM", "PATH"):
            patch.setenv(name, worker_environment()[name])
        with ThreadPoolExecutor(max_workers=16) as executor:
            async with Worker(
                client,
                task_queue=task_queue,
                workflows=WORKFLOWS,
                workflow_runner=workflow_runner(),
                activities=activities(),
                activity_executor=executor,
            ):
                yield task_queue
