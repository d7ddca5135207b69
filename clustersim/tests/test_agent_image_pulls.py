"""Image pulls as a kubelet does them: one pull per image per node.

Two pods on one node that need the same image: the first pays the full pull; the second, queued
behind it, finds the image in the node's store once the pull is done, reports a short pull with
the wait included (as the kubelet's serialized puller and containerd do), and starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fixtures import SimCluster, is_ready, start_cluster, wait_for

BIG_IMAGE = "registry.example.com/big/model-server:v1"
PROFILE = """
name: one-node
nodes:
  - count: 1
    name: sim-node-{index}
    capacity: {cpu: "64", memory: 512Gi, ephemeral-storage: 1000Gi, pods: "110"}
durations: {image_recheck: 1}
images:
  - {image: "registry.example.com/big/*", pull_seconds: 300, size_bytes: 1000000}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    workdir = tmp_path_factory.mktemp("pulls")
    profile = workdir / "one-node.yaml"
    profile.write_text(PROFILE)
    sim = start_cluster(workdir, str(profile))
    try:
        yield sim
    finally:
        sim.stop()


def pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": "sim-node-1",
            "containers": [{"name": "app", "image": BIG_IMAGE, "ports": [{"containerPort": 8080}]}],
        },
    }


def _pulled(cluster: SimCluster, namespace: str, name: str) -> str | None:
    messages = cluster.event_messages(namespace, name, "Pulled")
    return messages[0] if messages else None


def test_two_pods_needing_one_image_share_its_pull(cluster: SimCluster, tmp_path: Path) -> None:
    namespace = cluster.namespace("pulls")
    cluster.core.create_namespaced_pod(namespace, pod("first"))
    cluster.core.create_namespaced_pod(namespace, pod("second"))
    for name in ("first", "second"):
        wait_for(lambda name=name: is_ready(cluster.pod(namespace, name)), 30, f"{name} Ready")
    first = wait_for(lambda: _pulled(cluster, namespace, "first"), 10, "first Pulled event")
    second = wait_for(lambda: _pulled(cluster, namespace, "second"), 10, "second Pulled event")
    pattern = re.compile(
        rf'Successfully pulled image "{re.escape(BIG_IMAGE)}" in (\S+) \((\S+) including '
        r"waiting\)\. Image size: 1000000 bytes\."
    )
    first_match = pattern.fullmatch(first)
    second_match = pattern.fullmatch(second)
    assert first_match and second_match, (first, second)
    # which pod pulled first is the kubelet's choice; one paid the full pull, the other 1 s
    durations = sorted([first_match.group(1), second_match.group(1)])
    assert durations == ["1s", "5m0s"], (first, second)
    waiter = first_match if first_match.group(1) == "1s" else second_match
    # the waiting pod's total holds the other pod's pull (minus the moment between the two
    # pods reaching the node, which the time scale magnifies)
    minutes = re.match(r"(\d+)m", waiter.group(2))
    assert minutes is not None and int(minutes.group(1)) >= 2, waiter.group(0)
    for name in ("first", "second"):
        assert cluster.event_messages(namespace, name, "Pulling") == [
            f'Pulling image "{BIG_IMAGE}"'
        ]
        assert cluster.event_messages(namespace, name, "Started") == ["Started container app"]


def test_a_later_pod_finds_the_image_present(cluster: SimCluster) -> None:
    namespace = cluster.namespace("present")
    body = pod("late")
    body["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    cluster.core.create_namespaced_pod(namespace, pod("warm"))
    wait_for(lambda: is_ready(cluster.pod(namespace, "warm")), 30, "warm Ready")
    cluster.core.create_namespaced_pod(namespace, body)
    wait_for(lambda: is_ready(cluster.pod(namespace, "late")), 30, "late Ready")
    assert cluster.event_messages(namespace, "late", "Pulled") == [
        f'Container image "{BIG_IMAGE}" already present on machine'
    ]
    assert cluster.event_messages(namespace, "late", "Pulling") == []
