"""worker.py as a service: /readyz and /healthz for probes, /metrics for Prometheus, activity log
lines carrying workflow ID, run ID, activity and target, and bad listener settings refused."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import structlog
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client

import worker
from embedded.connect import ConnectionSettingsError
from embedded.temporal import TemporalDevServer
from tests.worker_launch import worker_process

REPO = Path(__file__).resolve().parents[1]
PROCESS_TIMEOUT_SECONDS = 30


class Where(BaseModel):
    cluster: str
    namespace: str


class LogInput(BaseModel):
    target: Where
    text: str


@activity.defn
async def log_a_line(request: LogInput) -> str:
    structlog.get_logger("test").info("structlog line", text=request.text)
    activity.logger.info("sdk line")
    return request.text


@activity.defn
def log_from_a_thread(request: LogInput) -> str:
    structlog.get_logger("test").info("thread line", text=request.text)
    return request.text


# Unsandboxed: about the worker's plumbing; the sandbox would re-import this test module.
@workflow.defn(sandboxed=False)
class LogTwice:
    @workflow.run
    async def run(self, request: LogInput) -> str:
        for call in (log_a_line, log_from_a_thread):
            await workflow.execute_activity(
                call, request, start_to_close_timeout=timedelta(seconds=10)
            )
        return request.text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WorkerProcess:
    process: subprocess.Popen[str]
    task_queue: str
    health: str
    metrics: str


@pytest.fixture
def served_worker(temporal_server: TemporalDevServer) -> Iterator[WorkerProcess]:
    task_queue = f"test-{uuid.uuid4()}"
    health_port, metrics_port = free_port(), free_port()
    environment = {
        "TEMPORAL_ADDRESS": temporal_server.address,
        "TEMPORAL_CONFIG_FILE": "/dev/null",
        "LLMD_TASK_QUEUE": task_queue,
        "LLMD_HEALTH_PORT": str(health_port),
        "LLMD_METRICS_PORT": str(metrics_port),
    }
    with worker_process(
        __name__, environment, workflows=["LogTwice"],
        activities=["log_a_line", "log_from_a_thread"],
    ) as process:
        yield WorkerProcess(
            process, task_queue, f"http://127.0.0.1:{health_port}",
            f"http://127.0.0.1:{metrics_port}/metrics",
        )


async def get(url: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient() as http:
            return await http.get(url, timeout=5)
    except httpx.TransportError:
        return None


async def until_ready(served: WorkerProcess) -> None:
    for _ in range(PROCESS_TIMEOUT_SECONDS * 10):
        response = await get(f"{served.health}/readyz")
        if response is not None and response.status_code == 200:
            return
        if served.process.poll() is not None:
            _, stderr = served.process.communicate()
            raise AssertionError(f"the worker exited: {stderr}")
        await asyncio.sleep(0.1)
    raise AssertionError("the worker never became ready")


async def test_worker_serves_probes_metrics_and_logs_activity_context(
    temporal_client: Client, served_worker: WorkerProcess
) -> None:
    await until_ready(served_worker)
    alive = await get(f"{served_worker.health}/healthz")
    workflow_id = f"log-{uuid.uuid4()}"

    handle = await temporal_client.start_workflow(
        LogTwice.run, LogInput(target=Where(cluster="h200", namespace="llm-d"), text="hello"),
        id=workflow_id, task_queue=served_worker.task_queue,
        execution_timeout=timedelta(seconds=PROCESS_TIMEOUT_SECONDS),
    )
    assert await handle.result() == "hello"
    scraped = await get(served_worker.metrics)
    served_worker.process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.to_thread(
        served_worker.process.communicate, timeout=PROCESS_TIMEOUT_SECONDS
    )

    assert alive is not None and alive.status_code == 200
    assert scraped is not None and scraped.status_code == 200
    assert "temporal_activity_execution_latency" in scraped.text
    assert served_worker.process.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    by_event = {line["event"]: line for line in lines}
    for event, activity_name in (
        ("structlog line", "log_a_line"), ("sdk line", "log_a_line"),
        ("thread line", "log_from_a_thread"),
    ):
        line = by_event[event]
        assert line["workflow_id"] == workflow_id, line
        assert line["run_id"] == handle.result_run_id, line
        assert line["activity"] == activity_name, line
        assert line["target"] == "h200/llm-d", line
    # Bound around an activity only: the worker's own lines carry none of it.
    assert "workflow_id" not in by_event["worker stopped"]


def parse(argv: list[str]) -> argparse.Namespace:
    return worker.build_parser().parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--metrics-port", "70000"], {}, r"^--metrics-port=70000 is not a port"),
        ([], {"LLMD_HEALTH_PORT": "http"}, r"^LLMD_HEALTH_PORT='http' is not a port number$"),
        ([], {"LLMD_METRICS_PORT": "0"}, r"^LLMD_METRICS_PORT=0 is not a port"),
    ],
)
def test_a_bad_listener_port_is_refused_naming_it(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConnectionSettingsError, match=message):
        worker.listeners_from_args(parse(argv), environ)


def test_listeners_default_to_off_on_loopback() -> None:
    listeners = worker.listeners_from_args(parse([]), {})

    assert listeners == worker.Listeners(host="127.0.0.1", metrics_port=None, health_port=None)
