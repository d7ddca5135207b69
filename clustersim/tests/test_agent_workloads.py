"""Workload controllers and the kubelet on a simulated cluster: Deployments, StatefulSets,
Services, probes, native sidecars, graceful deletion and LWS group recreation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agent_fixtures import (
    MODEL,
    SimCluster,
    condition,
    container_status,
    is_ready,
    start_cluster,
    wait_condition,
    wait_for,
)

APP_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    sim = start_cluster(tmp_path_factory.mktemp("workloads"), "h200-2node")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def namespace(cluster: SimCluster) -> Iterator[str]:
    yield cluster.namespace("work")
    cluster.clear_faults()


def app(image: str = APP_IMAGE, **extra: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "image": image,
        "ports": [{"containerPort": 8080, "name": "http"}],
        **extra,
    }


def deployment(name: str, replicas: int, container: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def ready_pods(cluster: SimCluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.pods(namespace, selector)
        if is_ready(p) and not p["metadata"].get("deletionTimestamp")
    ]


def read(cluster: SimCluster, path: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.get_json(path)
    return found


def test_deployment_rolls_out_a_new_replicaset_and_reports_its_conditions(
    cluster: SimCluster, namespace: str
) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web"
    cluster.apply([deployment("web", 2, app())], namespace)

    def complete() -> dict[str, Any] | None:
        found = read(cluster, path)
        progressing = condition(found, "Progressing") or {}
        status = found.get("status") or {}
        return (
            found
            if progressing.get("reason") == "NewReplicaSetAvailable"
            and status.get("updatedReplicas") == 2
            and status.get("availableReplicas") == 2
            else None
        )

    first = wait_for(complete, 20, "the first rollout")
    available = condition(first, "Available")
    assert (available["reason"], available["message"]) == (  # type: ignore[index]
        "MinimumReplicasAvailable",
        "Deployment has minimum availability.",
    )
    first_rs = read(cluster, f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"][0]
    template_hash = first_rs["metadata"]["labels"]["pod-template-hash"]
    assert first_rs["metadata"]["name"] == f"web-{template_hash}"
    assert condition(first, "Progressing")["message"] == (  # type: ignore[index]
        f'ReplicaSet "web-{template_hash}" has successfully progressed.'
    )
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in cluster.pods(namespace)} == {
        template_hash
    }
    cluster.apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [app(APP_IMAGE.replace("2.52", "2.53"))]}}}},
    )

    def rolled() -> dict[str, Any] | None:
        found = complete()
        if (
            found is None
            or found["status"].get("observedGeneration") != found["metadata"]["generation"]
        ):
            return None
        pods = ready_pods(cluster, namespace)
        images = {p["spec"]["containers"][0]["image"] for p in pods}
        return found if len(pods) == 2 and images == {APP_IMAGE.replace("2.52", "2.53")} else None

    wait_for(rolled, 30, "the rolling update to complete")
    replicasets = read(cluster, f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replicasets) == [0, 2]
    scaling = [
        e["message"] for e in cluster.events(namespace, "web") if e["reason"] == "ScalingReplicaSet"
    ]
    assert f"Scaled up replica set web-{template_hash} from 0 to 2" in scaling
    assert any(
        m.startswith(f"Scaled down replica set web-{template_hash} from 2 to ") for m in scaling
    )


def test_statefulset_pods_are_ordered_and_status_is_reported(
    cluster: SimCluster, namespace: str
) -> None:
    labels = {"app": "db"}
    cluster.apply(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 3,
                    "serviceName": "db",
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                app(
                                    readinessProbe={
                                        "tcpSocket": {"port": "http"},
                                        "periodSeconds": 1,
                                    }
                                )
                            ]
                        },
                    },
                },
            }
        ],
        namespace,
    )
    path = f"/apis/apps/v1/namespaces/{namespace}/statefulsets/db"
    status = wait_for(
        lambda: (
            s if (s := read(cluster, path).get("status") or {}).get("readyReplicas") == 3 else None
        ),
        30,
        "three ready replicas",
    )
    assert status["currentRevision"] == status["updateRevision"]
    assert status["updatedReplicas"] == 3
    pods = sorted(cluster.pods(namespace), key=lambda p: p["metadata"]["name"])
    assert [p["metadata"]["name"] for p in pods] == ["db-0", "db-1", "db-2"]
    for ordinal, pod in enumerate(pods):
        assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(ordinal)
        assert pod["metadata"]["labels"]["controller-revision-hash"] == status["updateRevision"]
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"db-{ordinal}", "db")
    started = [container_status(p, "app")["state"]["running"]["startedAt"] for p in pods]
    assert started == sorted(started), "OrderedReady starts each pod after the previous is Ready"


def test_service_endpoints_list_ready_and_unready_pods(cluster: SimCluster, namespace: str) -> None:
    cluster.apply(
        [
            deployment("api", 2, app()),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "broken", "labels": {"app": "api"}},
                "spec": {
                    "containers": [
                        app(
                            readinessProbe={
                                "httpGet": {"path": "/ready", "port": 9999},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            }
                        )
                    ]
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "api"},
                "spec": {
                    "selector": {"app": "api"},
                    "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
                },
            },
        ],
        namespace,
    )

    def endpoints() -> dict[str, Any] | None:
        found = read(cluster, f"/api/v1/namespaces/{namespace}/endpoints/api")
        subsets = found.get("subsets") or [{}]
        ready, unready = (
            subsets[0].get("addresses") or [],
            subsets[0].get("notReadyAddresses") or [],
        )
        return found if len(ready) == 2 and len(unready) == 1 else None

    found = wait_for(endpoints, 20, "two ready and one unready address")
    assert found["subsets"][0]["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    assert found["subsets"][0]["notReadyAddresses"][0]["targetRef"]["name"] == "broken"
    slices = read(cluster, f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
    [slice_] = [
        s for s in slices["items"] if s["metadata"]["labels"]["kubernetes.io/service-name"] == "api"
    ]
    assert sorted(e["conditions"]["ready"] for e in slice_["endpoints"]) == [False, True, True]
    broken_ip = cluster.pod(namespace, "broken")["status"]["podIP"]  # type: ignore[index]
    assert (
        f'Readiness probe failed: Get "http://{broken_ip}:9999/ready": dial tcp '
        f"{broken_ip}:9999: connect: connection refused"
    ) in cluster.event_messages(namespace, "broken", "Unhealthy")


def test_native_sidecar_starts_before_the_app_and_init_containers_complete(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "decode"},
                "spec": {
                    "initContainers": [
                        {
                            "name": "routing-proxy",
                            "image": "ghcr.io/llm-d/llm-d-routing-sidecar:v0.2.0",
                            "restartPolicy": "Always",
                            "args": ["--port=8000", "--vllm-port=8200"],
                            "ports": [{"containerPort": 8000}],
                        },
                        {"name": "setup", "image": "busybox:1.36"},
                    ],
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "ghcr.io/llm-d/llm-d:v0.2.0",
                            "command": ["vllm", "serve", MODEL, "--port", "8200"],
                        }
                    ],
                },
            }
        ],
        namespace,
    )
    pod = wait_for(
        lambda: p if is_ready(p := cluster.pod(namespace, "decode")) else None,
        20,
        "the pod to be Ready",
    )
    sidecar = container_status(pod, "routing-proxy")
    setup = container_status(pod, "setup")
    main = container_status(pod, "vllm")
    assert sidecar["started"] and "running" in sidecar["state"]
    assert (setup["state"]["terminated"]["reason"], setup["state"]["terminated"]["exitCode"]) == (
        "Completed",
        0,
    )
    assert sidecar["state"]["running"]["startedAt"] <= setup["state"]["terminated"]["finishedAt"]
    assert setup["state"]["terminated"]["finishedAt"] <= main["state"]["running"]["startedAt"]
    assert condition(pod, "Initialized")["status"] == "True"  # type: ignore[index]


def test_startup_probe_on_health_holds_readiness_until_vllm_has_loaded(
    cluster: SimCluster, namespace: str
) -> None:
    probe = {
        "httpGet": {"path": "/health", "port": 8000},
        "periodSeconds": 30,
        "failureThreshold": 60,
    }
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "prefill"},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "ghcr.io/llm-d/llm-d:v0.2.0",
                            "command": ["vllm", "serve", MODEL, "--port", "8000"],
                            "startupProbe": probe,
                        }
                    ]
                },
            }
        ],
        namespace,
    )
    wait_for(
        lambda: (
            (p := cluster.pod(namespace, "prefill"))
            and container_status(p, "vllm", False).get("state", {}).get("running")
        ),
        20,
        "the container to start",
    )
    assert not is_ready(cluster.pod(namespace, "prefill"))
    wait_for(lambda: is_ready(cluster.pod(namespace, "prefill")), 20, "the startup probe to pass")
    assert "Application startup complete." in cluster.logs(namespace, "prefill", "vllm")
    assert any(
        m.startswith("Startup probe failed: Get ")
        for m in cluster.event_messages(namespace, "prefill", "Unhealthy")
    )


def test_liveness_probe_failure_restarts_the_container(cluster: SimCluster, namespace: str) -> None:
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "sick"},
                "spec": {
                    "containers": [
                        app(
                            livenessProbe={
                                "httpGet": {"path": "/healthz", "port": 9999},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            }
                        )
                    ]
                },
            }
        ],
        namespace,
    )
    pod = wait_for(
        lambda: (
            p
            if container_status(p := cluster.pod(namespace, "sick"), "app", False).get(
                "restartCount", 0
            )
            >= 1
            else None
        ),
        20,
        "a restart",
    )
    terminated = container_status(pod, "app")["lastState"]["terminated"]
    assert terminated["exitCode"] == 137
    assert "Container app failed liveness probe, will be restarted" in cluster.event_messages(
        namespace, "sick", "Killing"
    )


def test_deleting_a_pod_stops_its_containers_then_removes_it(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bye"},
                "spec": {"containers": [app()]},
            }
        ],
        namespace,
    )
    wait_for(lambda: is_ready(cluster.pod(namespace, "bye")), 20, "the pod to run")
    cluster.core.delete_namespaced_pod("bye", namespace)
    wait_for(lambda: cluster.pod(namespace, "bye") is None, 20, "the pod to be gone")
    assert cluster.event_messages(namespace, "bye", "Killing") == ["Stopping container app"]


def test_lws_recreates_the_whole_group_when_a_worker_restarts(
    cluster: SimCluster, namespace: str
) -> None:
    cluster.install_crds()
    cluster.apply(
        [
            {
                "apiVersion": "leaderworkerset.x-k8s.io/v1",
                "kind": "LeaderWorkerSet",
                "metadata": {"name": "group"},
                "spec": {
                    "leaderWorkerTemplate": {
                        "size": 2,
                        "workerTemplate": {"spec": {"containers": [app()]}},
                    }
                },
            }
        ],
        namespace,
    )
    wait_for(lambda: len(ready_pods(cluster, namespace)) == 2, 30, "the group to be Ready")
    leader_uid = cluster.pod(namespace, "group-0")["metadata"]["uid"]  # type: ignore[index]
    cluster.add_fault(
        {
            "kind": "crash",
            "after_seconds": 0,
            "match": {"namespace": namespace, "pod": "^group-0-1$"},
        }
    )
    cluster.core.delete_namespaced_pod("group-0-1", namespace)

    def recreated() -> bool:
        pods = ready_pods(cluster, namespace)
        leader = next((p for p in pods if p["metadata"]["name"] == "group-0"), None)
        return len(pods) == 2 and leader is not None and leader["metadata"]["uid"] != leader_uid

    wait_for(recreated, 30, "the group to be recreated with a new leader")
    messages = cluster.event_messages(namespace, "group", "RecreateGroupOnPodRestart")
    assert any(
        m.startswith("Worker pod group-0-1 failed, deleted leader pod group-0 to recreate group 0")
        for m in messages
    )


def test_gpu_requests_count_against_node_allocatable(cluster: SimCluster, namespace: str) -> None:
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"gpu-{i}"},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"limits": {"nvidia.com/gpu": "6"}},
                    }
                ]
            },
        }
        for i in range(3)
    ]
    cluster.apply(pods, namespace)
    wait_condition(
        lambda: cluster.pod(namespace, "gpu-2") or {},
        "PodScheduled",
        20,
        "the third pod to be unschedulable",
        status="False",
    )
    nodes = {cluster.pod(namespace, f"gpu-{i}")["spec"].get("nodeName") for i in range(2)}  # type: ignore[index]
    assert nodes == {"h200-node-1", "h200-node-2"}
