"""The embedded Temporal dev server: search attributes, a real worker, restarts and clean stops."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import uuid
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

# The workflow below runs in the sandbox, which re-imports this module: the embedded package is
# host-side code, so it passes through instead of being re-imported (and checked) there.
with workflow.unsafe.imports_passed_through():
    from embedded.search_attributes import SEARCH_ATTRIBUTES
    from embedded.temporal import TemporalDevServer

LLMD_PHASE = SearchAttributeKey.for_keyword("LlmdPhase")


class Greeting(BaseModel):
    target: str
    replicas: int


@workflow.defn
class GreetTarget:
    """A stand-in rollout: marks its phase in a search attribute and answers with a model."""

    @workflow.run
    async def run(self, greeting: Greeting) -> Greeting:
        workflow.upsert_search_attributes([LLMD_PHASE.value_set("verify")])
        return Greeting(target=f"hello {greeting.target}", replicas=greeting.replicas + 1)


async def run_greeting(client: Client, workflow_id: str) -> Greeting:
    task_queue = f"test-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[GreetTarget]):
        return await client.execute_workflow(
            GreetTarget.run,
            Greeting(target="llm-d", replicas=1),
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=60),
        )


async def connect(server: TemporalDevServer) -> Client:
    return await Client.connect(
        server.address, namespace=server.namespace, data_converter=pydantic_data_converter
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_dev_server_registers_the_llmd_search_attributes(
    temporal_server: TemporalDevServer, temporal_client: Client
) -> None:
    listed = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_server.namespace)
    )

    registered = {
        name: IndexedValueType.Name(value_type)
        for name, value_type in listed.custom_attributes.items()
        if name in SEARCH_ATTRIBUTES
    }
    assert registered == {
        name: f"INDEXED_VALUE_TYPE_{value_type.upper()}"
        for name, value_type in SEARCH_ATTRIBUTES.items()
    }


async def test_workflow_runs_on_an_in_process_worker_with_pydantic_payloads(
    temporal_client: Client,
) -> None:
    workflow_id = f"greet-{uuid.uuid4()}"

    result = await run_greeting(temporal_client, workflow_id)

    assert result == Greeting(target="hello llm-d", replicas=2)
    description = await temporal_client.get_workflow_handle(workflow_id).describe()
    assert description.typed_search_attributes.get(LLMD_PHASE) == "verify"


async def test_restart_on_the_same_database_keeps_finished_workflows(tmp_path: Path) -> None:
    server = TemporalDevServer(tmp_path / "temporal.db")
    async with server:
        workflow_id = f"greet-{uuid.uuid4()}"
        client = await connect(server)
        await run_greeting(client, workflow_id)
        address_before, pid_before = server.address, server.pid
        await server.stop()

        await server.start()

        assert server.address == address_before
        assert server.pid != pid_before
        # The client connected before the restart reconnects to the same address by itself.
        handle = client.get_workflow_handle_for(GreetTarget.run, workflow_id)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert await handle.result() == Greeting(target="hello llm-d", replicas=2)
        listed = [
            execution.id
            async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'")
        ]
        assert listed == [workflow_id]


async def test_a_server_killed_without_warning_keeps_what_it_committed(tmp_path: Path) -> None:
    """The store is a write-ahead log committed without fsync: a SIGKILLed server loses nothing
    it had answered for, and the next start replays the log."""
    db_path = tmp_path / "temporal.db"
    server = TemporalDevServer(db_path)
    async with server:
        workflow_id = f"greet-{uuid.uuid4()}"
        client = await connect(server)
        await run_greeting(client, workflow_id)
        pid = server.pid
        assert pid is not None
        # The commits are in the log; with SQLite's default rollback journal there is no log.
        assert db_path.with_name("temporal.db-wal").stat().st_size > 0

        os.kill(pid, signal.SIGKILL)
        await server.stop()
        await server.start()

        handle = client.get_workflow_handle_for(GreetTarget.run, workflow_id)
        assert await handle.result() == Greeting(target="hello llm-d", replicas=2)
    # The journal mode is kept in the file itself, so every later start opens it the same way.
    with closing(sqlite3.connect(db_path)) as database:
        assert database.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_stop_ends_the_process_and_frees_its_ports(tmp_path: Path) -> None:
    server = TemporalDevServer(tmp_path / "temporal.db")
    await server.start()
    pid, ports = server.pid, server.ports
    assert pid is not None
    assert not port_is_free(ports.frontend)

    await server.stop()

    assert server.pid is None
    assert not process_exists(pid)
    assert port_is_free(ports.frontend)
    assert port_is_free(ports.ui)


async def test_starting_a_running_server_again_is_refused(
    temporal_server: TemporalDevServer,
) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        await temporal_server.start()
