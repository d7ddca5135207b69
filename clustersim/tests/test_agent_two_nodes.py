"""The reference manifests on the two-node cluster the README describes: 24 GPUs do not fit 16."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agent_fixtures import (
    WIDE_EP_NAMESPACE,
    SimCluster,
    condition,
    deploy_wide_ep,
    is_ready,
    start_cluster,
    wait_for,
)
from shared_reference import reference_dir

NS = WIDE_EP_NAMESPACE
UNSCHEDULABLE = (
    "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are "
    "available: 2 No preemption victims found for incoming pod."
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    reference_dir()
    sim = start_cluster(tmp_path_factory.mktemp("two-nodes"), "h200-2node")
    try:
        deploy_wide_ep(sim)
        yield sim
    finally:
        sim.stop()


def gpu_pods(cluster: SimCluster) -> list[dict[str, Any]]:
    return cluster.pods(NS, "llm-d.ai/inferenceServing=true")


def pending_pod(cluster: SimCluster) -> dict[str, Any] | None:
    pods = gpu_pods(cluster)
    if len(pods) != 3 or sum(is_ready(p) for p in pods) != 2:
        return None
    pending = [p for p in pods if not p["spec"].get("nodeName")]
    return pending[0] if len(pending) == 1 else None


def test_one_gpu_pod_stays_pending_with_the_schedulers_message(cluster: SimCluster) -> None:
    pod = wait_for(lambda: pending_pod(cluster), 30, "two GPU pods running and one pending")
    assert pod["status"]["phase"] == "Pending"
    scheduled = condition(pod, "PodScheduled")
    assert scheduled is not None
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"] == UNSCHEDULABLE
    name = pod["metadata"]["name"]
    events = [e for e in cluster.events(NS, name) if e["reason"] == "FailedScheduling"]
    assert events and events[0]["type"] == "Warning"
    assert events[0]["message"] == UNSCHEDULABLE
    assert events[0]["source"]["component"] == "default-scheduler"


def test_pending_pod_is_scheduled_when_capacity_frees_up(cluster: SimCluster) -> None:
    pod = wait_for(lambda: pending_pod(cluster), 30, "the pending GPU pod")
    owner = pod["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/name"]
    other = next(
        p["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/name"]
        for p in gpu_pods(cluster)
        if p["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/name"] != owner
    )
    cluster.custom.delete_namespaced_custom_object(
        "leaderworkerset.x-k8s.io", "v1", NS, "leaderworkersets", other
    )

    def placed() -> dict[str, Any] | None:
        current = cluster.pod(NS, pod["metadata"]["name"])
        return (
            current if current and current["spec"].get("nodeName") and is_ready(current) else None
        )

    current = wait_for(placed, 30, "the pending pod to be scheduled and Ready")
    scheduled = [
        e for e in cluster.events(NS, current["metadata"]["name"]) if e["reason"] == "Scheduled"
    ]
    assert scheduled[0]["message"] == (
        f"Successfully assigned {NS}/{current['metadata']['name']} to {current['spec']['nodeName']}"
    )
