"""The worker's Prometheus endpoint after real rollouts: the SDK's metrics and ours (an install, a
rolled-back upgrade, a gate wait, a capacity refusal), and label sets that stay bounded as
rollouts repeat. The worker runs the workflows with the stand-in activities of fakes.py, on a
client whose runtime has the Prometheus exporter, as worker.py builds it."""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.worker import Worker

from embedded.connect import ConnectionSettings, connect
from embedded.telemetry import prometheus_runtime
from embedded.temporal import TemporalDevServer
from spec.workflow_io import Outcome
from tests.workflows.fakes import FakeCluster
from tests.workflows.scenarios import crash_loop_on, installed, run_rollout
from tests.workflows.specs import between_roles, demo_spec, image
from workflows import metrics
from workflows.registry import WORKFLOWS, workflow_runner

REPO = Path(__file__).resolve().parents[2]
NEW_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.1"
BAD_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.1-broken"
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class MeteredWorker:
    client: Client
    task_queue: str
    metrics_url: str

    async def scrape(self) -> list[Sample]:
        async with httpx.AsyncClient() as http:
            response = await http.get(self.metrics_url, timeout=10)
        response.raise_for_status()
        samples = []
        for line in response.text.splitlines():
            match = SAMPLE.match(line)
            if match is None or line.startswith("#"):
                continue
            labels = dict(LABEL.findall(match["labels"] or ""))
            samples.append(Sample(match["name"], labels, float(match["value"])))
        return samples

    async def value(self, name: str, **labels: str) -> float:
        return sum(
            sample.value for sample in await self.scrape()
            if sample.name == name and labels.items() <= sample.labels.items()
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def metered_cluster() -> FakeCluster:
    return FakeCluster()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def metered(
    temporal_server: TemporalDevServer, metered_cluster: FakeCluster
) -> AsyncIterator[MeteredWorker]:
    port = free_port()
    runtime = prometheus_runtime("127.0.0.1", port, metrics.HISTOGRAM_BUCKETS)
    client = await connect(
        ConnectionSettings(address=temporal_server.address, namespace=temporal_server.namespace),
        runtime,
    )
    task_queue = f"metrics-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, workflow_runner=workflow_runner(),
        activities=metered_cluster.activities(),
    ):
        yield MeteredWorker(client, task_queue, f"http://127.0.0.1:{port}/metrics")


def target(name: str) -> str:
    return demo_spec(name).target_id


async def test_an_install_counts_a_start_a_success_and_its_phase_durations(
    metered: MeteredWorker, metered_cluster: FakeCluster
) -> None:
    await installed(metered.client, metered_cluster, metered.task_queue, "metrics-install")
    where = {"target": target("metrics-install")}

    assert await metered.value(f"{metrics.STARTED}_total", **where) == 1
    assert await metered.value(
        f"{metrics.FINISHED}_total", **where, outcome="succeeded", reason="none"
    ) == 1
    for phase in ("preflight", "infra", "model-service", "model-load", "verify", "record"):
        count = f"{metrics.PHASE_SECONDS}_count"
        assert await metered.value(count, **where, phase=phase) == 1, phase
    assert await metered.value(f"{metrics.MODEL_LOAD_SECONDS}_count", **where, role="decode") >= 1
    assert await metered.value(f"{metrics.STEP_SECONDS}_count", **where) > 0
    # Our buckets reach hours (a model load, a gate waiting for a person).
    buckets = {
        sample.labels["le"] for sample in await metered.scrape()
        if sample.name == f"{metrics.PHASE_SECONDS}_bucket"
    }
    assert {"1", "3600", "43200", "+Inf"} <= buckets, buckets
    # The SDK's own metrics ride on the same endpoint.
    assert await metered.value("temporal_workflow_completed_total") >= 1
    assert await metered.value(f"{metrics.ROLLBACKS}_total", **where) == 0


async def test_a_rolled_back_upgrade_counts_a_rollback_with_its_reason(
    metered: MeteredWorker, metered_cluster: FakeCluster
) -> None:
    await installed(metered.client, metered_cluster, metered.task_queue, "metrics-rollback")
    metered_cluster.faults.append(crash_loop_on(BAD_IMAGE))
    try:
        result = await run_rollout(
            metered.client, demo_spec("metrics-rollback", image(BAD_IMAGE)), metered.task_queue
        )
    finally:
        metered_cluster.faults.clear()
    where = {"target": target("metrics-rollback")}

    assert result.outcome == Outcome.ROLLED_BACK
    assert await metered.value(
        f"{metrics.FINISHED}_total", **where, outcome="rolled-back", reason="CrashLoop"
    ) == 1
    assert await metered.value(f"{metrics.ROLLBACKS}_total", **where, reason="CrashLoop") == 1
    assert await metered.value(f"{metrics.PHASE_SECONDS}_count", **where, phase="rollback") == 1


async def test_a_gate_wait_is_a_histogram_sample_of_its_seconds(
    metered: MeteredWorker, metered_cluster: FakeCluster
) -> None:
    pause = between_roles(pause="1s")
    await installed(metered.client, metered_cluster, metered.task_queue, "metrics-gate", pause)

    result = await run_rollout(
        metered.client, demo_spec("metrics-gate", pause, image(NEW_IMAGE)), metered.task_queue
    )
    where = {"target": target("metrics-gate")}

    assert result.outcome == Outcome.SUCCEEDED
    assert await metered.value(f"{metrics.GATE_WAIT_SECONDS}_count", **where) == 1
    assert await metered.value(f"{metrics.GATE_WAIT_SECONDS}_sum", **where) >= 1.0
    # Waiting for a gate is not time spent in a phase.
    assert await metered.value(f"{metrics.PHASE_SECONDS}_count", **where, phase="gate") == 0


async def test_a_capacity_refusal_is_counted(
    metered: MeteredWorker, metered_cluster: FakeCluster
) -> None:
    metered_cluster.capacity_fits = False
    try:
        result = await run_rollout(
            metered.client, demo_spec("metrics-no-room"), metered.task_queue
        )
    finally:
        metered_cluster.capacity_fits = True

    assert result.outcome == Outcome.FAILED
    where = {"target": target("metrics-no-room")}
    assert await metered.value(f"{metrics.CAPACITY_REFUSALS}_total", **where) == 1
    assert await metered.value(
        f"{metrics.FINISHED}_total", **where, outcome="failed", reason="InsufficientCapacity"
    ) == 1


@pytest.mark.slow
@pytest.mark.long
async def test_label_sets_stay_bounded_over_twenty_rollouts_of_five_targets(
    metered: MeteredWorker, metered_cluster: FakeCluster
) -> None:
    names = [f"metrics-card-{index}" for index in range(5)]

    async def series() -> dict[str, set[tuple[tuple[str, str], ...]]]:
        found: dict[str, set[tuple[tuple[str, str], ...]]] = defaultdict(set)
        for sample in await metered.scrape():
            if sample.name.startswith(metrics.PREFIX):
                found[sample.name].add(tuple(sorted(sample.labels.items())))
        return found

    for name in names:
        await run_rollout(metered.client, demo_spec(name), metered.task_queue)
    after_five = await series()
    for _ in range(3):
        for name in names:
            await run_rollout(metered.client, demo_spec(name), metered.task_queue)
    after_twenty = await series()

    assert after_twenty == after_five
    allowed = {
        "target", "phase", "outcome", "reason", "role", "le",
        # Added by the SDK's workflow metric meter.
        "namespace", "task_queue", "workflow_type", "service_name",
    }
    for name, label_sets in after_twenty.items():
        for labels in label_sets:
            assert {key for key, _ in labels} <= allowed, (name, labels)
    ours = {labels for label_sets in after_twenty.values() for labels in label_sets}
    targets = {dict(labels).get("target") for labels in ours}
    assert {target(name) for name in names} <= targets
    assert await metered.value(f"{metrics.STARTED}_total", target=target(names[0])) == 4


def test_the_grafana_dashboard_queries_only_metrics_the_worker_exports() -> None:
    dashboard = json.loads((REPO / "docs" / "grafana" / "llmd-rollout.json").read_text())
    ours = {
        getattr(metrics, name) for name in dir(metrics)
        if name.isupper() and isinstance(getattr(metrics, name), str)
        and getattr(metrics, name).startswith(metrics.PREFIX) and name != "PREFIX"
    }
    exported = {f"{name}_total" for name in ours} | {
        f"{name}_{part}" for name in ours for part in ("bucket", "sum", "count")
    }

    queried = {
        word
        for panel in dashboard["panels"]
        for query in panel["targets"]
        for word in re.findall(r"\b(llmd_rollout_\w+)", query["expr"])
    }
    assert queried <= exported, queried - exported
    for name in ours:
        assert any(word.startswith(name) for word in queried), f"no panel shows {name}"
