"""The agent's decisions that need no API server: quantities, scheduling, rollouts, faults, logs."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from agent_fixtures import reference_manifests

from clustersim.agent.controllers.lws_rollout import GroupState, plan_rollout
from clustersim.agent.faults import FaultError, FaultSet, parse_fault, parse_fault_document
from clustersim.agent.fit import NodeUsage, place_pod, pod_requests
from clustersim.agent.informer import Informer
from clustersim.agent.ipam import PodIpAllocator
from clustersim.agent.kubeclient import Resource
from clustersim.agent.kubelet.env import expand
from clustersim.agent.kubelet.images import go_duration, image_id, pull_policy
from clustersim.agent.kubelet.logs import ContainerLog, LogQuery
from clustersim.agent.kubelet.server import KubeletServer
from clustersim.agent.meta import merge_patch_diff
from clustersim.agent.profile import ProfileError, TimeScale, load_profile
from clustersim.agent.quantity import QuantityError, parse_resource_list, to_milli
from clustersim.agent.workloads.vllm import parse_vllm_command
from clustersim.agent.workloads.vllm_logs import shard_progress_line
from clustersim.lws_pods import mutate_lws_pod
from clustersim.pki import load_or_create_ca

GPU_POD_RESOURCES = {
    "limits": {"nvidia.com/gpu": "8", "rdma/ib": 1, "memory": "512Gi"},
    "requests": {"cpu": 32, "nvidia.com/gpu": "8", "rdma/ib": 1, "memory": "512Gi"},
}
H200_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "gpu.nvidia.com/model", "operator": "In", "values": ["H200"]}
                    ]
                }
            ]
        }
    }
}


def gpu_pod(name: str = "p", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "affinity": H200_AFFINITY,
            "containers": [{"name": "vllm", "image": "x", "resources": GPU_POD_RESOURCES}],
            **spec,
        },
    }


def node(name: str, labels: dict[str, str], gpus: int = 8) -> NodeUsage:
    return NodeUsage.of(
        {
            "metadata": {"name": name, "labels": labels},
            "status": {
                "allocatable": {
                    "cpu": "128",
                    "memory": "2Ti",
                    "pods": "110",
                    "nvidia.com/gpu": str(gpus),
                    "rdma/ib": "1k",
                    "ephemeral-storage": "3500Gi",
                }
            },
        }
    )


H200 = {"gpu.nvidia.com/model": "H200"}


# ---- quantities ---------------------------------------------------------------------------


def test_quantities_parse_exactly_in_milli_units() -> None:
    assert to_milli("32") == 32000
    assert to_milli("500m") == 500
    assert to_milli("512Gi") == 512 * 2**30 * 1000
    assert to_milli("1k") == 1000 * 1000
    assert to_milli("1e3") == 1000 * 1000
    assert to_milli(1) == 1000
    assert parse_resource_list({"cpu": "100m", "memory": "1Gi"}) == {
        "cpu": 100,
        "memory": 2**30 * 1000,
    }


def test_malformed_quantity_is_rejected() -> None:
    with pytest.raises(QuantityError):
        to_milli("eight")


# ---- scheduling ---------------------------------------------------------------------------


def test_pod_requests_count_sidecars_with_app_containers_and_init_as_peak() -> None:
    pod = {
        "spec": {
            "initContainers": [
                {
                    "name": "sidecar",
                    "restartPolicy": "Always",
                    "resources": {"requests": {"cpu": "1"}},
                },
                {"name": "setup", "resources": {"requests": {"cpu": "4", "memory": "1Gi"}}},
            ],
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "2"}}}],
        }
    }
    requests = pod_requests(pod)
    # max(app 2 + sidecar 1, setup 4 + sidecar 1) = 5 CPUs; memory from the init step.
    assert requests["cpu"] == 5000
    assert requests["memory"] == 2**30 * 1000


def test_limits_stand_in_for_missing_requests() -> None:
    pod = {"spec": {"containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}
    assert pod_requests(pod)["nvidia.com/gpu"] == 8000


def test_third_eight_gpu_pod_does_not_fit_two_h200_nodes() -> None:
    nodes = [node("h200-node-1", H200), node("h200-node-2", H200)]
    for usage in nodes:
        usage.add_pod(pod_requests(gpu_pod()))
    placement = place_pod(gpu_pod(), nodes)
    assert placement.node_name is None
    assert placement.message == (
        "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are "
        "available: 2 No preemption victims found for incoming pod."
    )


def test_mixed_reasons_are_counted_and_sorted_as_kube_scheduler_does() -> None:
    full = node("gpu-a", H200)
    full.add_pod(pod_requests(gpu_pod()))
    nodes = [full, node("cpu-a", {}), node("cpu-b", {"gpu.nvidia.com/model": "A100"})]
    message = place_pod(gpu_pod(), nodes).message
    assert message == (
        "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's "
        "node affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims "
        "found for incoming pod, 2 Preemption is not helpful for scheduling."
    )


def test_untolerated_taint_is_reported_with_its_key() -> None:
    tainted = NodeUsage.of(
        {
            "metadata": {"name": "n", "labels": H200},
            "spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]},
            "status": {
                "allocatable": {
                    "pods": "110",
                    "nvidia.com/gpu": "8",
                    "cpu": "128",
                    "memory": "2Ti",
                    "rdma/ib": "1k",
                }
            },
        }
    )
    message = place_pod(gpu_pod(), [tainted]).message
    assert "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }" in message


def test_scheduler_spreads_pods_over_the_least_allocated_node() -> None:
    busy = node("a", H200)
    busy.add_pod({"cpu": 64000})
    assert place_pod(gpu_pod(), [busy, node("b", H200)]).node_name == "b"


# ---- profiles and time scale --------------------------------------------------------------


def test_builtin_profiles_describe_h200_nodes() -> None:
    profile = load_profile("h200-2node")
    assert [n.name for n in profile.nodes] == ["h200-node-1", "h200-node-2"]
    first = profile.nodes[0]
    assert first.labels["gpu.nvidia.com/model"] == "H200"
    assert first.capacity["nvidia.com/gpu"] == 8000
    assert first.capacity["memory"] == 2 * 2**40 * 1000
    assert first.capacity["cpu"] == 128000
    assert len(load_profile("h200-3node").nodes) == 3


def test_custom_profile_file_is_loaded_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(
        "name: small\nnodes:\n  - count: 2\n    name: gpu-{index}\n"
        "    capacity: {cpu: '8', memory: 64Gi, nvidia.com/gpu: '1'}\n"
        "durations: {model_load: 60}\nunknown_images: fail\n"
    )
    profile = load_profile(str(path))
    assert [n.name for n in profile.nodes] == ["gpu-1", "gpu-2"]
    assert profile.durations.model_load == 60
    assert profile.unknown_images == "fail"
    path.write_text("nodes: [{capacity: {cpu: lots}}]\n")
    with pytest.raises(ProfileError, match="capacity"):
        load_profile(str(path))


def test_time_scale_multiplies_durations_and_bounds_periods() -> None:
    scale = TimeScale(0.003)
    assert scale.delay(600) == pytest.approx(1.8)
    assert scale.period(10) == 0.1


# ---- LeaderWorkerSet ----------------------------------------------------------------------


def plan(groups: list[GroupState], **overrides: Any) -> tuple[int, int]:
    arguments: dict[str, Any] = {
        "lws_replicas": len(groups),
        "max_unavailable": 1,
        "max_surge": 0,
        "partition": 0,
        "leader_sts_exists": True,
        "template_changed": False,
        "sts_replicas": len(groups),
        "sts_partition": len(groups),
        "groups": groups,
    }
    arguments.update(overrides)
    result = plan_rollout(**arguments)
    return result.replicas, result.partition


OLD = GroupState(ready=True, updated=False)
NEW = GroupState(ready=True, updated=True)
COMING = GroupState(ready=False, updated=True)


def test_lws_update_starts_by_holding_every_group_back() -> None:
    assert plan([OLD, OLD, OLD], template_changed=True) == (3, 3)


def test_lws_update_replaces_groups_from_the_highest_index_down() -> None:
    assert plan([OLD, OLD, OLD]) == (3, 2)
    assert plan([OLD, OLD, COMING], sts_partition=2) == (3, 2)
    assert plan([OLD, OLD, NEW], sts_partition=2) == (3, 1)
    assert plan([OLD, NEW, NEW], sts_partition=1) == (3, 0)
    assert plan([NEW, NEW, NEW], sts_partition=0) == (3, 0)


def test_lws_partition_keeps_lower_groups_on_the_old_template() -> None:
    assert plan([OLD, OLD], partition=1, template_changed=True) == (2, 2)
    assert plan([OLD, OLD], partition=1, sts_partition=2) == (2, 1)
    assert plan([OLD, NEW], partition=1, sts_partition=1) == (2, 1)


def test_lws_max_surge_adds_groups_then_releases_them() -> None:
    assert plan([OLD, OLD], max_surge=1, template_changed=True) == (3, 2)
    three = [OLD, OLD, COMING]
    assert plan(three, lws_replicas=2, max_surge=1, sts_replicas=3, sts_partition=2) == (3, 1)
    done = [NEW, NEW, NEW]
    assert plan(done, lws_replicas=2, max_surge=1, sts_replicas=3, sts_partition=0) == (2, 0)


def test_lws_webhook_injects_group_labels_and_env() -> None:
    pod = {
        "metadata": {
            "name": "ms-decode-0",
            "namespace": "llm-d-wide-ep",
            "labels": {"leaderworkerset.sigs.k8s.io/name": "ms-decode"},
            "annotations": {"leaderworkerset.sigs.k8s.io/size": "2"},
        },
        "spec": {
            "subdomain": "ms-decode",
            "containers": [{"name": "vllm", "env": [{"name": "A", "value": "1"}]}],
        },
    }
    mutate_lws_pod(pod, {})
    labels = pod["metadata"]["labels"]
    assert labels["leaderworkerset.sigs.k8s.io/group-index"] == "0"
    assert labels["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert len(labels["leaderworkerset.sigs.k8s.io/group-key"]) == 40
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["LWS_LEADER_ADDRESS"] == "ms-decode-0.ms-decode.llm-d-wide-ep"
    assert env["LWS_GROUP_SIZE"] == "2"
    assert env["LWS_WORKER_INDEX"] == "0"


# ---- faults -------------------------------------------------------------------------------


def test_faults_are_bounded_and_validated() -> None:
    crash = parse_fault({"kind": "crash", "match": {"role": "decode"}, "error": "nixl"}, "x")
    assert crash.count == 1
    node_fault = parse_fault({"kind": "node_not_ready", "match": {"node": "node-2$"}}, "y")
    assert node_fault.count is None and node_fault.duration_seconds == 600
    for bad, field in (
        ({"kind": "explode"}, "kind"),
        ({"kind": "crash", "error": "bad"}, "error"),
        ({"kind": "crash", "count": 0}, "count"),
        ({"kind": "capacity"}, "resources"),
        ({"kind": "crash", "match": {"pod": "("}}, "match.pod"),
        ({"kind": "crash", "wat": 1}, "unknown"),
    ):
        with pytest.raises(FaultError, match=field):
            parse_fault(bad, "z")


async def test_fault_matching_by_image_role_and_pod_name_consumes_its_count() -> None:
    faults = FaultSet(TimeScale(0.01))
    faults.add(
        {
            "kind": "image_pull",
            "match": {"image": "ghcr.io/llm-d/*", "role": "decode", "pod": "-decode-0$"},
            "count": 2,
        }
    )
    pod = {
        "metadata": {
            "name": "ms-decode-0",
            "namespace": "n",
            "labels": {"llm-d.ai/role": "decode"},
        },
        "spec": {},
    }
    other = {
        "metadata": {
            "name": "ms-prefill-0",
            "namespace": "n",
            "labels": {"llm-d.ai/role": "prefill"},
        },
        "spec": {},
    }
    container = {"name": "vllm", "image": "ghcr.io/llm-d/llm-d:v0.2.0"}
    assert faults.take("image_pull", other, container) is None
    assert faults.take("image_pull", pod, {"name": "c", "image": "docker.io/x:1"}) is None
    assert faults.take("image_pull", pod, container) is not None
    assert faults.take("image_pull", pod, container) is not None
    assert faults.take("image_pull", pod, container) is None


async def test_fault_with_a_duration_expires() -> None:
    faults = FaultSet(TimeScale(0.001))
    changes: list[int] = []
    faults.on_change(lambda: changes.append(1))
    faults.add({"kind": "node_not_ready", "duration_seconds": 50})
    assert faults.node_faults("h200-node-1")
    await asyncio.sleep(0.1)
    assert not faults.node_faults("h200-node-1")
    assert len(changes) == 2


def test_fault_profile_document_forms() -> None:
    assert len(parse_fault_document("faults:\n  - kind: oom\n  - kind: crash\n")) == 2
    assert len(parse_fault_document('{"kind": "gateway_503", "count": 3}')) == 1


# ---- kubelet pieces -----------------------------------------------------------------------


def test_env_expansion_follows_kubernetes_rules() -> None:
    defined = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", defined) == "x-y-$(C)-$(A)"


def test_image_helpers_match_containerd_and_kubelet_output() -> None:
    assert go_duration(300) == "5m0s"
    assert go_duration(0.5) == "500ms"
    assert go_duration(61.5) == "1m1.5s"
    assert pull_policy({"image": "nginx"}) == "Always"
    assert pull_policy({"image": "nginx:1.27"}) == "IfNotPresent"
    assert image_id("nginx:1.27").startswith("docker.io/library/nginx@sha256:")


async def test_container_log_selection_and_follow() -> None:
    log = ContainerLog()
    log.write("one\ntwo\nthree")
    assert log.select(LogQuery(tail_lines=2)) == b"two\nthree\n"
    assert log.select(LogQuery(limit_bytes=5)) == b"one\nt"
    assert log.select(LogQuery(timestamps=True)).split(b" ", 1)[0].endswith(b"Z")

    async def follow() -> list[bytes]:
        return [chunk async for chunk in log.follow(LogQuery(tail_lines=1))]

    reader = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    log.write("four")
    log.close()
    assert await asyncio.wait_for(reader, 2) == [b"three\n", b"four\n"]


def test_pod_ips_are_unique_loopback_addresses_from_127_1(tmp_path: Path) -> None:
    allocator = PodIpAllocator(lock_dir=tmp_path)
    first, second = allocator.allocate("a"), allocator.allocate("b")
    assert first == "127.1.0.1" and second == "127.1.0.2"
    assert allocator.allocate("a") == first
    allocator.release("a")
    assert allocator.allocate("c") == "127.1.0.3", "a freed address is not reused at once"
    other_agent = PodIpAllocator(lock_dir=tmp_path)
    assert other_agent.allocate("x") == "127.1.1.1", "another agent gets its own /24 block"
    allocator.close()
    other_agent.close()


def test_vllm_command_is_read_from_the_reference_decode_script() -> None:
    documents = reference_manifests("ms-wide-ep.rendered.yaml")
    decode = next(d for d in documents if d["metadata"]["name"].endswith("-decode"))
    container = decode["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    command = parse_vllm_command(container, {})
    assert command is not None
    assert (command.model, command.port) == ("deepseek-ai/DeepSeek-R1-0528", 8200)


def test_weight_loading_progress_lines_look_like_tqdm() -> None:
    assert shard_progress_line(0, 0, 200) == (
        "Loading safetensors checkpoint shards:   0% Completed | 0/163 [00:00<?, ?it/s]"
    )
    line = shard_progress_line(82, 100.0, 200.0)
    assert line.startswith("Loading safetensors checkpoint shards:  50% Completed | 82/163 [01:40<")


def test_merge_patch_diff_removes_dropped_keys_and_replaces_lists() -> None:
    current = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2], "same": {"x": 1}}
    desired = {"a": 1, "b": {"c": 5}, "l": [3], "same": {"x": 1}, "new": True}
    assert merge_patch_diff(current, desired) == {
        "b": {"c": 5, "d": None},
        "l": [3],
        "new": True,
    }


async def test_informer_ignores_watch_events_that_are_not_newer_than_its_cache() -> None:
    """Each stored change has its own resourceVersion, so a watch event at the cached version
    (the echo of a write the controller already applied) is not a change."""
    pods = Resource("", "v1", "pods", "Pod")

    def pod_at(version: int, phase: str) -> dict[str, Any]:
        return {
            "metadata": {"name": "p", "namespace": "ns", "resourceVersion": str(version)},
            "status": {"phase": phase},
        }

    class FakeClient:
        async def list(self, resource: Resource) -> tuple[list[dict[str, Any]], str]:
            return [pod_at(5, "Pending")], "5"

        async def watch(self, resource: Resource, version: str) -> Any:
            yield "MODIFIED", pod_at(5, "Unknown")  # same version: nothing changed
            yield "MODIFIED", pod_at(4, "Failed")  # older than the cache
            yield "MODIFIED", pod_at(6, "Running")
            await asyncio.Event().wait()

    informer = Informer(FakeClient(), pods)  # type: ignore[arg-type]
    seen: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, obj, old: seen.append((kind, obj["status"]["phase"])))
    task = asyncio.create_task(informer.run())
    try:
        for _ in range(100):
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert seen == [("ADDED", "Pending"), ("MODIFIED", "Running")]
    informer.upsert(pod_at(6, "Succeeded"))
    assert informer.get("ns", "p") == pod_at(6, "Running") | {"apiVersion": "v1", "kind": "Pod"}


async def test_kubelet_ends_a_followed_log_when_its_reader_leaves(tmp_path: Path) -> None:
    """A quiet container's followed log waits for new lines; when the reader (the API server)
    goes away the kubelet drops the stream, so stopping the agent is not held up by it."""
    log = ContainerLog()
    log.write("started")
    runtime = SimpleNamespace(log=log, previous_log=None)
    worker = SimpleNamespace(container=lambda name: runtime if name == "quiet" else None)
    kubelet = SimpleNamespace(worker_for=lambda namespace, name: worker)
    node = SimpleNamespace(ip="127.0.0.1", kubelet_port=0, name="unit-node")
    ca = load_or_create_ca(tmp_path, "unit-kubelet-ca")
    server = KubeletServer(kubelet, ca, tmp_path)  # type: ignore[arg-type]
    await server.start([node])  # type: ignore[list-item]
    stopped = False
    try:
        url = f"https://127.0.0.1:{node.kubelet_port}/containerLogs/ns/p/quiet?follow=true"
        verified = ssl.create_default_context(cafile=str(ca.cert_path))
        async with aiohttp.ClientSession() as session, session.get(url, ssl=verified) as response:
            assert await response.content.readline() == b"started\n"
        await asyncio.sleep(0.1)
        await asyncio.wait_for(server.stop(), 2)
        stopped = True
    finally:
        if not stopped:
            await server.stop()
