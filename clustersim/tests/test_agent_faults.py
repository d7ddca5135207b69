"""Each fault kind leaves the state a real cluster shows: phases, container states, restart
counts, events and log lines. One simulated two-node cluster for the module; every test works in
its own namespace and aims its faults at that namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from agent_fixtures import (
    MODEL,
    SimCluster,
    condition,
    container_status,
    http,
    is_ready,
    start_cluster,
    wait_condition,
    wait_for,
)

VLLM_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.0"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    sim = start_cluster(tmp_path_factory.mktemp("faults"), "h200-2node")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def namespace(cluster: SimCluster) -> Iterator[str]:
    name = cluster.namespace("fault")
    yield name
    cluster.clear_faults()


def vllm_container(**extra: Any) -> dict[str, Any]:
    return {
        "name": "vllm",
        "image": VLLM_IMAGE,
        "command": ["/bin/bash", "-c"],
        "args": [f"exec vllm serve {MODEL} --port 8000"],
        "ports": [{"containerPort": 8000, "name": "http"}],
        **extra,
    }


def deployment(name: str, container: dict[str, Any], **pod_spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], **pod_spec},
            },
        },
    }


def only_pod(cluster: SimCluster, namespace: str) -> dict[str, Any] | None:
    pods = [p for p in cluster.pods(namespace) if not p["metadata"].get("deletionTimestamp")]
    return pods[0] if len(pods) == 1 else None


def waiting_reason(pod: dict[str, Any] | None, container: str = "vllm") -> str | None:
    if pod is None:
        return None
    for entry in (pod.get("status") or {}).get("containerStatuses") or []:
        if entry["name"] == container:
            return str((entry["state"].get("waiting") or {}).get("reason") or "") or None
    return None


def test_image_pull_fault_shows_err_image_pull_then_back_off(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.add_fault({"kind": "image_pull", "count": 2, "match": {"namespace": namespace}})
    cluster.apply([deployment("puller", vllm_container())], namespace)
    seen: set[str] = set()

    def observe() -> bool:
        reason = waiting_reason(only_pod(cluster, namespace))
        if reason:
            seen.add(reason)
        return "ImagePullBackOff" in seen

    wait_for(observe, 20, "ImagePullBackOff")
    pod = wait_for(
        lambda: p if is_ready(p := only_pod(cluster, namespace)) else None,
        30,
        "the pull to succeed once the fault is spent",
    )
    name = pod["metadata"]["name"]
    failed = cluster.event_messages(namespace, name, "Failed")
    assert any(
        m.startswith(f'Failed to pull image "{VLLM_IMAGE}": rpc error: code = NotFound')
        for m in failed
    )
    assert "Error: ErrImagePull" in failed and "Error: ImagePullBackOff" in failed
    assert f'Back-off pulling image "{VLLM_IMAGE}"' in cluster.event_messages(
        namespace, name, "BackOff"
    )
    assert any(
        m.startswith(f'Successfully pulled image "{VLLM_IMAGE}" in ')
        for m in cluster.event_messages(namespace, name, "Pulled")
    )
    assert cluster.event_messages(namespace, name, "Pulling")[0] == f'Pulling image "{VLLM_IMAGE}"'


def test_crash_fault_crash_loops_with_back_off_and_the_error_in_previous_logs(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.add_fault(
        {
            "kind": "crash",
            "error": "cuda_oom",
            "after_seconds": 0,
            "count": 30,
            "match": {"namespace": namespace},
        }
    )
    cluster.apply([deployment("crasher", vllm_container())], namespace)
    pod = wait_for(
        lambda: (
            p
            if waiting_reason(p := only_pod(cluster, namespace)) == "CrashLoopBackOff"
            and container_status(p, "vllm", False).get("restartCount", 0) >= 2
            else None
        ),
        30,
        "CrashLoopBackOff after a few restarts",
    )
    status = container_status(pod, "vllm")
    assert status["state"]["waiting"]["message"].startswith("back-off ")
    assert "restarting failed container=vllm pod=" in status["state"]["waiting"]["message"]
    terminated = status["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
    assert pod["status"]["phase"] == "Running" and not is_ready(pod)
    name = pod["metadata"]["name"]
    previous = cluster.logs(namespace, name, "vllm", previous=True)
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" in previous
    assert any(
        m.startswith("Back-off restarting failed container vllm in pod ")
        for m in cluster.event_messages(namespace, name, "BackOff")
    )
    cluster.clear_faults()
    wait_for(lambda: is_ready(only_pod(cluster, namespace)), 60, "recovery once the fault is gone")


def test_oom_fault_records_oomkilled_137_in_last_state(cluster: SimCluster, namespace: str) -> None:
    cluster.add_fault({"kind": "oom", "after_seconds": 10, "match": {"namespace": namespace}})
    cluster.apply([deployment("hungry", vllm_container())], namespace)
    pod = wait_for(
        lambda: (
            p
            if container_status(p := only_pod(cluster, namespace), "vllm", False)
            .get("lastState", {})
            .get("terminated")
            else None
        ),
        20,
        "the OOM kill",
    )
    terminated = container_status(pod, "vllm")["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
    assert container_status(pod, "vllm")["restartCount"] == 1


def test_missing_secret_or_key_is_create_container_config_error(
    cluster: SimCluster, namespace: str
) -> None:
    env = [
        {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "llm-d-hf-token", "key": "HF_TOKEN"}},
        }
    ]
    cluster.apply([deployment("needs-token", vllm_container(env=env))], namespace)

    def waiting_message() -> str | None:
        pod = only_pod(cluster, namespace)
        if waiting_reason(pod) != "CreateContainerConfigError":
            return None
        return str(container_status(pod, "vllm")["state"]["waiting"]["message"])  # type: ignore[arg-type]

    assert wait_for(waiting_message, 20, "CreateContainerConfigError") == (
        'secret "llm-d-hf-token" not found'
    )
    cluster.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "llm-d-hf-token"}, "stringData": {"TOKEN": "x"}}
    )
    wait_for(
        lambda: (
            waiting_message()
            == (f"couldn't find key HF_TOKEN in Secret {namespace}/llm-d-hf-token")
        ),
        20,
        "the key error",
    )
    pod = only_pod(cluster, namespace)
    assert pod is not None
    assert 'Error: secret "llm-d-hf-token" not found' in cluster.event_messages(
        namespace, pod["metadata"]["name"], "Failed"
    )
    cluster.core.patch_namespaced_secret(
        "llm-d-hf-token", namespace, {"stringData": {"HF_TOKEN": "hf_x"}}
    )
    wait_for(lambda: is_ready(only_pod(cluster, namespace)), 20, "the container to start")


def test_load_that_never_ends_leaves_a_ready_pod_without_a_server(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.add_fault({"kind": "load_hang", "match": {"namespace": namespace}})
    cluster.apply([deployment("stuck", vllm_container())], namespace)
    pod = wait_for(
        lambda: p if is_ready(p := only_pod(cluster, namespace)) else None,
        20,
        "the pod to be Ready",
    )
    name = pod["metadata"]["name"]
    # Twice the normal load time (480 simulated seconds) later, vLLM still loads.
    wait_for(
        lambda: (
            "Loading safetensors checkpoint shards:  39%" in cluster.logs(namespace, name, "vllm")
        ),
        10,
        "weight loading to reach 39%",
    )
    import time

    time.sleep(2 * 480 * 0.003)
    log = cluster.logs(namespace, name, "vllm")
    assert "Application startup complete." not in log
    assert "Loading safetensors checkpoint shards:  50%" not in log
    assert http("GET", f"http://{pod['status']['podIP']}:8000/health", timeout=2)[0] == 0


def test_slow_load_takes_longer_but_finishes(cluster: SimCluster, namespace: str) -> None:
    cluster.add_fault({"kind": "slow_load", "factor": 2, "match": {"namespace": namespace}})
    cluster.apply([deployment("slow", vllm_container())], namespace)
    pod = wait_for(
        lambda: p if is_ready(p := only_pod(cluster, namespace)) else None,
        20,
        "the pod to be Ready",
    )
    wait_for(
        lambda: (
            "Application startup complete."
            in cluster.logs(namespace, pod["metadata"]["name"], "vllm")
        ),
        20,
        "the slow load to finish",
    )
    log = cluster.logs(namespace, pod["metadata"]["name"], "vllm")
    assert "Loading weights took 432.00 seconds" in log


def test_gateway_faults_and_errors(cluster: SimCluster, namespace: str) -> None:
    cluster.install_crds()
    cluster.istio_gateway_class()
    backend = deployment(
        "web",
        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080, "name": "http"}]},
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
                    "backendRefs": [{"name": "web", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/pool"}}],
                    "backendRefs": [
                        {
                            "group": "inference.networking.x-k8s.io",
                            "kind": "InferencePool",
                            "name": "missing",
                        }
                    ],
                },
            ],
        },
    }
    cluster.apply([backend, service, gateway, route], namespace)
    programmed = wait_condition(
        lambda: cluster.custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "gateways", "gw"
        ),
        "Programmed",
        20,
        "the Gateway",
    )
    assert programmed["status"]["addresses"][0]["type"] == "IPAddress"
    wait_for(
        lambda: any(
            is_ready(p)
            for p in cluster.pods(namespace, "gateway.networking.k8s.io/gateway-name=gw")
        ),
        20,
        "the gateway pod",
    )
    url = cluster.gateway_url(namespace, "gw")
    wait_for(lambda: http("GET", f"{url}/app")[0] == 200, 20, "the route to serve")
    assert http("GET", f"{url}/elsewhere")[0] == 404
    assert http("GET", f"{url}/pool") == (500, b"fault filter abort")
    cluster.add_fault({"kind": "gateway_503", "count": 2})
    assert http("GET", f"{url}/app") == (503, b"no healthy upstream")
    assert http("GET", f"{url}/app") == (503, b"no healthy upstream")
    assert http("GET", f"{url}/app")[0] == 200
    parents = cluster.custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "web"
    )["status"]["parents"]
    resolved = condition({"status": parents[0]}, "ResolvedRefs")
    assert resolved is not None
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    assert resolved["message"] == "backend(missing) not found"
    # The InferencePool API group Istio 1.28 GA speaks, which this gateway does not know.
    v1_pool = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}
    cluster.custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io",
        "v1",
        namespace,
        "httproutes",
        "web",
        {"spec": {"rules": [{"backendRefs": [v1_pool]}]}},
    )

    def invalid_kind() -> dict[str, Any] | None:
        route = cluster.custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", "web"
        )
        found = condition({"status": route["status"]["parents"][0]}, "ResolvedRefs") or {}
        return found if found.get("reason") == "InvalidKind" else None

    assert wait_for(invalid_kind, 10, "ResolvedRefs InvalidKind")["message"] == (
        'referencing unsupported backendRef: group "inference.networking.k8s.io" '
        'kind "InferencePool"'
    )


def test_gateway_of_an_unknown_class_stays_pending(cluster: SimCluster, namespace: str) -> None:
    cluster.install_crds()
    cluster.apply(
        [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "orphan"},
                "spec": {
                    "gatewayClassName": "kgateway",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                },
            }
        ],
        namespace,
    )
    gateway = wait_for(
        lambda: cluster.custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "gateways", "orphan"
        ),
        10,
        "the Gateway",
    )
    accepted = condition(gateway, "Accepted")
    assert accepted is not None
    assert (accepted["status"], accepted["reason"]) == ("Unknown", "Pending")
    assert not cluster.pods(namespace)


def gpu_deployment(name: str) -> dict[str, Any]:
    return deployment(
        name,
        {
            "name": "app",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"limits": {"nvidia.com/gpu": "8"}},
        },
    )


def test_capacity_fault_makes_gpu_pods_unschedulable_until_it_ends(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.add_fault({"kind": "capacity", "resources": {"nvidia.com/gpu": "4"}})
    cluster.apply([gpu_deployment("big")], namespace)
    message = (
        "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are "
        "available: 2 No preemption victims found for incoming pod."
    )
    wait_condition(
        lambda: only_pod(cluster, namespace) or {},
        "PodScheduled",
        20,
        "the pod to be unschedulable",
        status="False",
    )
    pod = only_pod(cluster, namespace)
    assert condition(pod or {}, "PodScheduled")["message"] == message  # type: ignore[index]
    nodes = cluster.core.list_node().items
    assert {n.status.allocatable["nvidia.com/gpu"] for n in nodes} == {"4"}
    cluster.clear_faults()
    wait_for(lambda: is_ready(only_pod(cluster, namespace)), 20, "scheduling after the fault")


def test_node_not_ready_evicts_pods_and_controllers_replace_them(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.apply([deployment("survivor", vllm_container())], namespace)
    first = wait_for(
        lambda: p if is_ready(p := only_pod(cluster, namespace)) else None, 20, "the first pod"
    )
    node = first["spec"]["nodeName"]
    fault = cluster.add_fault(
        {"kind": "node_not_ready", "match": {"node": f"^{node}$"}, "duration_seconds": 3000}
    )
    assert fault["kind"] == "node_not_ready"

    def node_state() -> dict[str, Any]:
        found: dict[str, Any] = cluster.get_json(f"/api/v1/nodes/{node}")
        return found

    lost = wait_condition(node_state, "Ready", 20, "the node to go NotReady", status="Unknown")
    assert condition(lost, "Ready")["reason"] == "NodeStatusUnknown"  # type: ignore[index]
    # The taints follow by a write of their own, as on a real cluster (the node lifecycle
    # controller taints after the status changed): reading them with NotReady would race.
    lost = wait_for(
        lambda: n if (n := node_state())["spec"].get("taints") else None, 10, "the taints"
    )
    assert {(t["key"], t["effect"]) for t in lost["spec"]["taints"]} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    replacement = wait_for(
        lambda: (
            p
            if is_ready(p := only_pod(cluster, namespace))
            and p["metadata"]["uid"] != first["metadata"]["uid"]
            else None
        ),
        30,
        "a replacement pod on the healthy node",
    )
    assert replacement["spec"]["nodeName"] != node
    assert cluster.event_messages(namespace, first["metadata"]["name"], "TaintManagerEviction") == [
        f"Marking for deletion Pod {namespace}/{first['metadata']['name']}"
    ]
    cluster.clear_faults()
    wait_condition(node_state, "Ready", 20, "the node to come back")
    # As on a real cluster, the unreachable taints are removed once the node is Ready again,
    # by a write of its own: reading them in the same instant as Ready would race with it.
    wait_for(lambda: not node_state()["spec"].get("taints"), 10, "the taints to be removed")

    def all_nodes_up() -> bool:
        info = json.loads(http("GET", cluster.admin_url + "/info")[1])
        return all(not n["down"] for n in info["nodes"])

    wait_for(all_nodes_up, 10, "the agent to report every node up")
