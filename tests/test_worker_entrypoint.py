"""worker.py and embedded.connect: settings from flags and environment, a real worker process."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

import worker
from embedded.connect import (
    ConnectionSettings,
    ConnectionSettingsError,
    add_connection_arguments,
    connect,
    settings_from_args,
)
from embedded.temporal import TemporalDevServer
from tests.worker_launch import worker_process as launched_worker
from tests.workflows.test_sandbox import HOST_IDS, ImportedModules

REPO = Path(__file__).resolve().parents[1]
PROCESS_TIMEOUT_SECONDS = 30


# Unsandboxed: these tests are about the worker's plumbing, and the sandbox would re-import this
# test module (pytest, subprocess, the entry point) as if it were workflow code.
@workflow.defn(sandboxed=False)
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    return parser.parse_args(argv)


def test_flags_override_environment_which_overrides_defaults() -> None:
    environ = {"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "rollouts"}

    settings = settings_from_args(parse(["--namespace", "staging"]), environ)

    assert settings == ConnectionSettings(
        address="temporal:7233", namespace="staging", task_queue="llmd-rollout"
    )
    assert settings.tls_config() is False


def test_empty_environment_values_count_as_unset() -> None:
    environ = {
        "TEMPORAL_ADDRESS": "", "TEMPORAL_TLS_CLIENT_CERT_PATH": "", "TEMPORAL_API_KEY": "",
    }

    settings = settings_from_args(parse([]), environ)

    assert settings == ConnectionSettings()


def test_client_certificate_without_its_key_is_rejected_naming_both_settings() -> None:
    with pytest.raises(
        ConnectionSettingsError,
        match=r"--tls-cert/TEMPORAL_TLS_CLIENT_CERT_PATH.*--tls-key/TEMPORAL_TLS_CLIENT_KEY_PATH",
    ):
        settings_from_args(parse(["--tls-cert", "client.pem"]), {})


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:7233", "temporal:7233", "my-ns.a1b2c.tmprl.cloud:7233", "[::1]:7233",
     "temporal_frontend.internal.:443"],
)
def test_host_port_addresses_are_accepted(address: str) -> None:
    assert settings_from_args(parse(["--address", address]), {}).address == address


@pytest.mark.parametrize(
    "address", ["not a host", "temporal", ":7233", "temporal:0", "temporal:port", "[::zz]:7233",
                "http://temporal:7233"],
)
def test_a_worker_refuses_an_address_that_is_not_host_port(address: str) -> None:
    with pytest.raises(ConnectionSettingsError, match=r"^TEMPORAL_ADDRESS="):
        settings_from_args(parse([]), {"TEMPORAL_ADDRESS": address})


def test_api_key_turns_tls_on_and_never_shows_in_repr() -> None:
    settings = settings_from_args(parse([]), {"TEMPORAL_API_KEY": "secret-key-value"})

    assert settings.api_key == "secret-key-value"
    assert settings.tls_config() is True
    assert "secret-key-value" not in repr(settings)


def test_tls_files_are_read_into_the_client_tls_config(tmp_path: Path) -> None:
    for name in ("client.pem", "client.key", "ca.pem"):
        (tmp_path / name).write_bytes(f"contents of {name}".encode())
    environ = {
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "client.pem"),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "client.key"),
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "ca.pem"),
    }

    tls = settings_from_args(parse([]), environ).tls_config()

    assert tls == TLSConfig(
        server_root_ca_cert=b"contents of ca.pem",
        client_cert=b"contents of client.pem",
        client_private_key=b"contents of client.key",
    )


def test_unreadable_tls_file_is_reported_with_the_setting_that_named_it(tmp_path: Path) -> None:
    settings = settings_from_args(parse(["--tls-ca", str(tmp_path / "missing-ca.pem")]), {})

    with pytest.raises(ConnectionSettingsError, match=r"missing-ca\.pem given by --tls-ca:"):
        settings.tls_config()


async def test_connect_gives_a_client_with_the_pydantic_data_converter(
    temporal_server: TemporalDevServer,
) -> None:
    client = await connect(ConnectionSettings(address=temporal_server.address))

    assert client.data_converter is pydantic_data_converter
    assert client.namespace == "default"


async def test_worker_runs_registered_workflows_until_shutdown_is_requested(
    temporal_client: Client,
) -> None:
    task_queue = f"test-{uuid.uuid4()}"
    shutdown = asyncio.Event()
    running = asyncio.create_task(
        worker.run_worker(temporal_client, task_queue, [Echo], [], shutdown)
    )

    result = await temporal_client.execute_workflow(
        Echo.run, "ping", id=f"echo-{uuid.uuid4()}", task_queue=task_queue,
        execution_timeout=timedelta(seconds=30),
    )
    shutdown.set()
    await asyncio.wait_for(running, timeout=PROCESS_TIMEOUT_SECONDS)

    assert result == "ping"


async def test_worker_with_nothing_registered_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "WORKFLOWS", [])
    monkeypatch.setattr(worker, "activities", list)

    assert await worker.serve(ConnectionSettings()) == worker.EXIT_USAGE


@pytest.fixture
def worker_process(
    temporal_server: TemporalDevServer,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """worker.py in its own process, with Echo added to the workflow registry."""
    task_queue = f"test-{uuid.uuid4()}"
    environment = {"TEMPORAL_ADDRESS": temporal_server.address, "LLMD_TASK_QUEUE": task_queue}
    with launched_worker(__name__, environment, workflows=["Echo"]) as process:
        yield process, task_queue


async def test_worker_process_serves_then_exits_zero_on_sigterm_logging_json(
    temporal_client: Client, worker_process: tuple[subprocess.Popen[str], str]
) -> None:
    process, task_queue = worker_process

    result = await temporal_client.execute_workflow(
        Echo.run, "pong", id=f"echo-{uuid.uuid4()}", task_queue=task_queue,
        execution_timeout=timedelta(seconds=PROCESS_TIMEOUT_SECONDS),
    )
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.to_thread(process.communicate, timeout=PROCESS_TIMEOUT_SECONDS)

    assert result == "pong"
    assert process.returncode == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.strip()]
    assert events[0] == "worker polling"
    assert events[-1] == "worker stopped"


def test_the_worker_loop_lets_many_blocking_calls_wait_at_once() -> None:
    """Forty activities each blocked in a Kubernetes call at once (asyncio.to_thread) all run:
    the loop's stock executor (6 threads on 2 cores) would leave 34 queued, and this barrier
    broken."""
    callers = 40
    assert callers <= worker.BLOCKING_THREADS

    async def blocked_together() -> None:
        worker.use_blocking_threads(asyncio.get_running_loop())
        worker.use_blocking_threads(asyncio.get_running_loop())  # once per loop
        barrier = threading.Barrier(callers, timeout=10)
        await asyncio.gather(*(asyncio.to_thread(barrier.wait) for _ in range(callers)))

    asyncio.run(blocked_together())


# The sandbox of tests/workflows/test_sandbox.py, through the product's own worker: our data
# model imported once, not for every run.
async def test_the_product_worker_runs_its_workflows_in_that_sandbox(
    temporal_client: Client,
) -> None:
    task_queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    shutdown = asyncio.Event()
    running = asyncio.create_task(
        worker.run_worker(temporal_client, task_queue, [ImportedModules], [], shutdown)
    )
    try:
        seen = await temporal_client.execute_workflow(
            ImportedModules.run, id=f"sandbox-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
    finally:
        shutdown.set()
        await asyncio.wait_for(running, timeout=PROCESS_TIMEOUT_SECONDS)
    assert tuple(seen) == HOST_IDS
