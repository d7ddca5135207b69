"""Fixtures of the workflow tests: an in-process worker on the session's Temporal dev server,
with the stand-in activities of tests/workflows/fakes.py over a fresh fake cluster per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from tests.workflows.fakes import FakeCluster
from workflows.registry import WORKFLOWS


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
        activities=fake_cluster.activities(),
    ):
        yield task_queue
