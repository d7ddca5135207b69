"""The llm-d wide-EP reference stack on a simulated three-node H200 cluster.

One `python -m clustersim up --profile h200-3node` for the module. The rendered reference
manifests are applied as the guide installs them; the tests follow the guide: the pods it lists,
Ready before vLLM has loaded, then `/v1/models` and `/v1/completions` through the gateway, with
both prefill and decode work visible in vLLM's metrics, and LeaderWorkerSet rolling updates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fixtures import (
    MODEL,
    WIDE_EP_NAMESPACE,
    SimCluster,
    condition,
    container_status,
    deploy_wide_ep,
    http,
    is_ready,
    metric,
    start_cluster,
    wait_condition,
    wait_for,
)
from shared_reference import reference_dir

NS = WIDE_EP_NAMESPACE
DECODE = "ms-wide-ep-llm-d-modelservice-decode"
PREFILL = "ms-wide-ep-llm-d-modelservice-prefill"
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    reference_dir()
    sim = start_cluster(tmp_path_factory.mktemp("wide-ep"), "h200-3node")
    try:
        # Three times the normal load time for the three vLLM pods, so there is a clear window
        # in which the pods are Ready but nothing serves yet.
        sim.add_fault(
            {
                "kind": "slow_load",
                "factor": 3,
                "count": 3,
                "match": {"namespace": NS, "image": "ghcr.io/llm-d/llm-d-dev:*"},
            }
        )
        skipped = deploy_wide_ep(sim)
        assert set(skipped) <= {"DestinationRule", "Ingress"}
        yield sim
    finally:
        sim.stop()


def gateway_url(cluster: SimCluster) -> str:
    return cluster.gateway_url(NS, "infra-wide-ep-inference-gateway")


def pods_ready(cluster: SimCluster, count: int) -> list[dict[str, Any]] | None:
    pods = cluster.pods(NS)
    return pods if len(pods) == count and all(is_ready(p) for p in pods) else None


def pod_ip(cluster: SimCluster, name: str) -> str:
    pod = cluster.pod(NS, name)
    assert pod is not None
    return str(pod["status"]["podIP"])


def test_pods_are_ready_before_vllm_has_loaded_and_the_gateway_says_503(
    cluster: SimCluster,
) -> None:
    wait_for(lambda: pods_ready(cluster, 5), 30, "the five reference pods to be Ready")
    log = wait_for(
        lambda: (
            text
            if "Loading safetensors checkpoint shards:"
            in (text := cluster.logs(NS, f"{DECODE}-0", "vllm-worker-decode"))
            else None
        ),
        10,
        "weight loading to start",
    )
    assert "Application startup complete." not in log
    decode_ip = pod_ip(cluster, f"{DECODE}-0")
    status, _ = http("GET", f"http://{decode_ip}:8200/health", timeout=2)
    assert status == 0, "vLLM's port must be closed while the model loads"
    status, body = http("GET", gateway_url(cluster) + "/v1/models")
    assert (status, body) == (503, b"no healthy upstream")


def test_reference_manifests_yield_the_pods_and_labels_of_the_guide(cluster: SimCluster) -> None:
    pods = wait_for(lambda: pods_ready(cluster, 5), 30, "the five reference pods")
    names = sorted(p["metadata"]["name"] for p in pods)
    assert names[:1] == [
        f"infra-wide-ep-inference-gateway-istio-{names[0].split('-')[-2]}-{names[0].split('-')[-1]}"
    ]
    assert re.fullmatch(r"infra-wide-ep-inference-gateway-istio-[a-z0-9]+-[a-z0-9]{5}", names[0])
    assert names[1:3] == [f"{DECODE}-0", f"{DECODE}-0-1"]
    assert re.fullmatch(r"ms-wide-ep-llm-d-modelservice-epp-[a-z0-9]+-[a-z0-9]{5}", names[3])
    assert names[4] == f"{PREFILL}-0"
    decode = cluster.pods(NS, "llm-d.ai/inferenceServing=true,llm-d.ai/role=decode")
    assert sorted(p["metadata"]["name"] for p in decode) == [f"{DECODE}-0", f"{DECODE}-0-1"]
    leader, worker = sorted(decode, key=lambda p: p["metadata"]["name"])
    assert leader["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert worker["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"] == "1"
    assert worker["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/group-index"] == "0"
    assert worker["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/leader-name"] == (
        f"{DECODE}-0"
    )
    env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
    assert env["LWS_LEADER_ADDRESS"] == f"{DECODE}-0.{DECODE}.{NS}"
    assert env["LWS_GROUP_SIZE"] == "2" and env["LWS_WORKER_INDEX"] == "1"
    assert {p["spec"]["nodeName"] for p in decode} | {
        cluster.pod(NS, f"{PREFILL}-0")["spec"]["nodeName"]  # type: ignore[index]
    } == {"h200-node-1", "h200-node-2", "h200-node-3"}
    sidecar = container_status(leader, "routing-proxy")
    assert sidecar["started"] and sidecar["ready"]


def test_gateway_and_routes_are_programmed_and_accepted(cluster: SimCluster) -> None:
    gateway = wait_condition(
        lambda: cluster.custom_object(
            "gateway.networking.k8s.io", "v1", NS, "gateways", "infra-wide-ep-inference-gateway"
        ),
        "Programmed",
        20,
        "the Gateway to be Programmed",
    )
    assert condition(gateway, "Accepted")["status"] == "True"  # type: ignore[index]
    assert gateway["status"]["listeners"][0]["attachedRoutes"] == 1
    route = cluster.custom_object(
        "gateway.networking.k8s.io", "v1", NS, "httproutes", "ms-wide-ep-llm-d-modelservice"
    )
    parent = route["status"]["parents"][0]
    assert parent["controllerName"] == "istio.io/gateway-controller"
    assert {c["type"]: c["reason"] for c in parent["conditions"]} == {
        "Accepted": "Accepted",
        "ResolvedRefs": "ResolvedRefs",
    }
    pool = cluster.custom_object(
        "inference.networking.x-k8s.io", "v1alpha2", NS, "inferencepools", "ms-wide-ep"
    )
    assert pool["status"]["parent"][0]["parentRef"]["name"] == "infra-wide-ep-inference-gateway"
    gateway_class = cluster.dynamic.resources.get(
        api_version="gateway.networking.k8s.io/v1", kind="GatewayClass"
    ).get(name="istio")
    assert condition(gateway_class.to_dict(), "Accepted")["status"] == "True"  # type: ignore[index]


def test_after_the_load_the_gateway_serves_completions_through_prefill_and_decode(
    cluster: SimCluster,
) -> None:
    url = gateway_url(cluster)
    status, body = wait_for(
        lambda: answer if (answer := http("GET", url + "/v1/models"))[0] == 200 else None,
        30,
        "the model to be served through the gateway",
    )
    models = json.loads(body)
    assert models["data"][0]["id"] == MODEL and models["data"][0]["max_model_len"] == 163840
    prefill_ip = pod_ip(cluster, f"{PREFILL}-0")
    decode_ips = [pod_ip(cluster, f"{DECODE}-0"), pod_ip(cluster, f"{DECODE}-0-1")]
    wait_for(
        lambda: all(http("GET", f"http://{ip}:8200/health")[0] == 200 for ip in decode_ips),
        30,
        "both decode vLLM servers",
    )
    status, body = http(
        "POST",
        url + "/v1/completions",
        {
            "model": MODEL,
            "prompt": "I will explain how to make a cake, step by step",
            "max_tokens": 12,
        },
    )
    assert status == 200, body
    answer = json.loads(body)
    assert answer["choices"][0]["text"].strip()
    assert answer["usage"]["completion_tokens"] == 12 and answer["usage"]["prompt_tokens"] > 0
    prefill_metrics = http("GET", f"http://{prefill_ip}:8000/metrics")[1]
    assert metric(prefill_metrics, "vllm:request_success_total") >= 1
    assert metric(prefill_metrics, "vllm:prompt_tokens_total") > 0
    decode_generated = sum(
        metric(http("GET", f"http://{ip}:8200/metrics")[1], "vllm:generation_tokens_total")
        for ip in decode_ips
    )
    assert decode_generated >= 12
    log = cluster.logs(NS, f"{DECODE}-0", "vllm-worker-decode")
    assert "Starting vLLM API server 0 on http://0.0.0.0:8200" in log
    assert "Application startup complete." in log


def test_requests_without_a_model_or_route_get_the_gateways_errors(cluster: SimCluster) -> None:
    url = gateway_url(cluster)
    status, body = http("POST", url + "/v1/completions", {"prompt": "hi"})
    assert (status, body) == (400, b"model not found in request body")


def test_lws_reports_ready_groups_and_available(cluster: SimCluster) -> None:
    lws = wait_condition(
        lambda: cluster.custom_object(*LWS[:2], NS, LWS[2], DECODE),
        "Available",
        30,
        "the decode LWS to be Available",
    )
    assert lws["status"]["readyReplicas"] == 1 and lws["status"]["updatedReplicas"] == 1
    assert lws["status"]["hpaPodSelector"] == (
        f"leaderworkerset.sigs.k8s.io/name={DECODE},leaderworkerset.sigs.k8s.io/worker-index=0"
    )
    available = condition(lws, "Available")
    assert (available["reason"], available["message"]) == (  # type: ignore[index]
        "AllGroupsReady",
        "All replicas are ready",
    )
    assert "observedGeneration" not in lws["status"]


def test_changing_the_decode_image_rolls_the_group_through_update_in_progress(
    cluster: SimCluster,
) -> None:
    wait_for(lambda: pods_ready(cluster, 5), 30, "the stack to be Ready")
    old_uid = cluster.pod(NS, f"{DECODE}-0")["metadata"]["uid"]  # type: ignore[index]
    image = "ghcr.io/llm-d/llm-d:v0.2.0"
    cluster.custom.patch_namespaced_custom_object(
        *LWS[:2],
        NS,
        LWS[2],
        DECODE,
        {
            "spec": {
                "leaderWorkerTemplate": {
                    "workerTemplate": {
                        "spec": {"containers": [{**_decode_container(), "image": image}]}
                    }
                }
            }
        },
    )

    def rolled() -> bool:
        pods = [cluster.pod(NS, f"{DECODE}-0"), cluster.pod(NS, f"{DECODE}-0-1")]
        return all(
            p is not None
            and is_ready(p)
            and p["metadata"]["uid"] != old_uid
            and p["spec"]["containers"][0]["image"] == image
            for p in pods
        )

    wait_for(rolled, 40, "the decode group to be recreated with the new image")
    lws = wait_condition(
        lambda: cluster.custom_object(*LWS[:2], NS, LWS[2], DECODE),
        "Available",
        30,
        "the decode LWS to be Available again",
    )
    assert condition(lws, "UpdateInProgress")["status"] == "False"  # type: ignore[index]
    messages = [(e["reason"], e["message"]) for e in cluster.events(NS, DECODE)]
    updating = [m for reason, m in messages if reason == "GroupsUpdating"]
    assert len(updating) == 1, "only the image change is an update, not the initial creation"
    assert updating[0].startswith("Rolling Upgrade is in progress, with ")
    assert updating[0].endswith(" groups ready of total 1 groups")
    assert (
        "AllGroupsReady",
        "All replicas are ready, with 1 groups ready of total 1 groups",
    ) in messages
    revisions = [
        r
        for r in cluster.get_json(f"/apis/apps/v1/namespaces/{NS}/controllerrevisions")["items"]
        if any(
            o["kind"] == "LeaderWorkerSet" and o["name"] == DECODE
            for o in r["metadata"].get("ownerReferences") or []
        )
    ]
    assert len(revisions) == 1, "old revisions are truncated once the update completes"
    assert (
        revisions[0]["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/template-revision-hash"]
        == cluster.pod(NS, f"{DECODE}-0")["metadata"]["labels"][  # type: ignore[index]
            "leaderworkerset.sigs.k8s.io/template-revision-hash"
        ]
    )


def _decode_container() -> dict[str, Any]:
    from agent_fixtures import reference_manifests

    documents = reference_manifests("ms-wide-ep.rendered.yaml")
    decode = next(d for d in documents if d["metadata"]["name"] == DECODE)
    container: dict[str, Any] = decode["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"][
        "containers"
    ][0]
    return container


def small_lws(name: str, image: str, replicas: int, partition: int) -> dict[str, Any]:
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"partition": partition},
            },
            "leaderWorkerTemplate": {
                "size": 2,
                "workerTemplate": {
                    "spec": {
                        "containers": [
                            {"name": "app", "image": image, "ports": [{"containerPort": 8080}]}
                        ]
                    }
                },
            },
        },
    }


def test_lws_partition_updates_only_groups_at_or_above_it(cluster: SimCluster) -> None:
    namespace = cluster.namespace("lws-partition")
    cluster.apply([small_lws("canary", "registry.k8s.io/pause:3.9", 2, 1)], namespace)
    wait_for(
        lambda: len(cluster.pods(namespace)) == 4 and all(map(is_ready, cluster.pods(namespace))),
        30,
        "two groups of two pods",
    )
    cluster.custom.patch_namespaced_custom_object(
        *LWS[:2],
        namespace,
        LWS[2],
        "canary",
        {
            "spec": {
                "leaderWorkerTemplate": {
                    "workerTemplate": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "registry.k8s.io/pause:3.10",
                                    "ports": [{"containerPort": 8080}],
                                }
                            ]
                        }
                    }
                }
            }
        },
    )

    def images() -> dict[str, str]:
        return {
            p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
            for p in cluster.pods(namespace)
            if is_ready(p)
        }

    expected = {
        "canary-0": "registry.k8s.io/pause:3.9",
        "canary-0-1": "registry.k8s.io/pause:3.9",
        "canary-1": "registry.k8s.io/pause:3.10",
        "canary-1-1": "registry.k8s.io/pause:3.10",
    }
    wait_for(lambda: images() == expected, 30, "only group 1 to be updated")
    lws = wait_condition(
        lambda: cluster.custom_object(*LWS[:2], namespace, LWS[2], "canary"),
        "Available",
        30,
        "the partitioned LWS to be Available",
    )
    assert lws["status"]["updatedReplicas"] == 1 and lws["status"]["readyReplicas"] == 2
    assert images() == expected


def test_reference_dir_has_the_rendered_manifests() -> None:
    assert Path(reference_dir() / "rendered" / "ms-wide-ep.rendered.yaml").is_file()
