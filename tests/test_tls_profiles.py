"""The CLI and the worker connect with a connection profile to a Temporal that speaks TLS: mTLS
(client certificate required) and server TLS with an API key, through tests/tls_proxy.py in front
of the embedded dev server. A profile without the client certificate is refused by the handshake
and reported in one line."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from embedded.temporal import TemporalDevServer
from tests.test_worker_entrypoint import Echo
from tests.test_worker_service import free_port, get
from tests.tls_proxy import make_pki, tls_front
from tests.worker_launch import worker_process

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Profiles:
    config_file: Path
    mtls_address: str


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def profiles(
    temporal_server: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Profiles]:
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory)
    async with (
        tls_front(pki, temporal_server.address, require_client_cert=True) as mtls,
        tls_front(pki, temporal_server.address, require_client_cert=False) as server_tls,
    ):
        config = directory / "temporal.toml"
        config.write_text(f"""
[profile.mtls]
address = "{mtls}"
namespace = "{temporal_server.namespace}"
[profile.mtls.tls]
client_cert_path = "{pki.client_cert}"
client_key_path = "{pki.client_key}"
server_ca_cert_path = "{pki.ca}"
server_name = "localhost"

[profile.cloud]
address = "{server_tls}"
namespace = "{temporal_server.namespace}"
api_key = "an-api-key"
[profile.cloud.tls]
server_ca_cert_path = "{pki.ca}"
server_name = "localhost"

[profile.no-client-cert]
address = "{mtls}"
[profile.no-client-cert.tls]
server_ca_cert_path = "{pki.ca}"
server_name = "localhost"
""")
        yield Profiles(config, mtls)


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(REPO / "starter.py"), *args],
        capture_output=True, text=True, timeout=TIMEOUT_SECONDS, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO / ".venv")},
    )


@pytest.mark.parametrize("profile", ["mtls", "cloud"])
async def test_the_cli_connects_with_a_tls_profile(profiles: Profiles, profile: str) -> None:
    completed = await cli(
        "list", "-o", "json", "--config-file", str(profiles.config_file), "--profile", profile
    )

    assert completed.returncode == 0, completed.stderr


async def test_a_profile_without_the_client_certificate_is_refused_in_one_line(
    profiles: Profiles,
) -> None:
    completed = await cli(
        "list", "-o", "json", "--config-file", str(profiles.config_file),
        "--profile", "no-client-cert",
    )

    assert completed.returncode != 0
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stderr
    assert profiles.mtls_address in lines[0]


async def test_the_worker_polls_through_mtls_with_a_profile(
    profiles: Profiles, temporal_client: Client
) -> None:
    task_queue = f"tls-{uuid.uuid4().hex[:8]}"
    health_port = free_port()
    environment = {
        "TEMPORAL_CONFIG_FILE": str(profiles.config_file),
        "TEMPORAL_PROFILE": "mtls",
        "LLMD_TASK_QUEUE": task_queue,
        "LLMD_HEALTH_PORT": str(health_port),
    }
    with worker_process("tests.test_worker_entrypoint", environment, ["Echo"]) as process:
        result = await temporal_client.execute_workflow(
            Echo.run, "over mtls", id=f"echo-{uuid.uuid4()}", task_queue=task_queue,
            execution_timeout=timedelta(seconds=TIMEOUT_SECONDS),
        )
        ready = await get(f"http://127.0.0.1:{health_port}/readyz")
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=TIMEOUT_SECONDS)

    assert result == "over mtls"
    assert ready is not None and ready.status_code == 200
    assert process.returncode == 0, stderr
    assert profiles.mtls_address in stderr
