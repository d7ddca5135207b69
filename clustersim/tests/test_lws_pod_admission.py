"""The LWS pod webhook as an admission step of clustersim's API server: LWS groups form whichever
StatefulSet controller creates the pods.

The agent runs with `--controllers scheduler,kubelet,leaderworkerset,endpoints` (no StatefulSet
controller, as next to a real kube-controller-manager); this test plays the StatefulSet
controller itself, creating `<sts>-<ordinal>` pods from each StatefulSet's template as
kube-controller-manager does, and never adds an LWS label or variable. The leader and worker pods
must still carry the webhook's labels and `LWS_*` environment, the agent's LWS controller must
create the worker StatefulSet, and the LeaderWorkerSet must become Available.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from agent_fixtures import SimCluster, condition, http, is_ready, start_cluster, wait_for
from kubernetes.client.rest import ApiException

LWS_LABEL = "leaderworkerset.sigs.k8s.io"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    sim = start_cluster(tmp_path_factory.mktemp("lws-admission"), "h200-2node",
                        "--controllers", "scheduler,kubelet,leaderworkerset,endpoints")
    try:
        sim.install_crds()
        yield sim
    finally:
        sim.stop()


def stand_in_statefulset_controller(cluster: SimCluster, namespace: str) -> None:
    """One pass of a minimal StatefulSet controller: create each missing ordinal's pod."""
    for sts in cluster.apps.list_namespaced_stateful_set(namespace).items:
        body = cluster.api.sanitize_for_serialization(sts)
        spec = body["spec"]
        start = (spec.get("ordinals") or {}).get("start", 0)
        for ordinal in range(start, start + spec["replicas"]):
            name = f"{body['metadata']['name']}-{ordinal}"
            template = copy.deepcopy(spec["template"])
            metadata = template.get("metadata") or {}
            labels = {**(metadata.get("labels") or {}),
                      "statefulset.kubernetes.io/pod-name": name,
                      "apps.kubernetes.io/pod-index": str(ordinal)}
            pod = {
                "metadata": {
                    "name": name, "labels": labels,
                    "annotations": metadata.get("annotations") or {},
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "StatefulSet",
                        "name": body["metadata"]["name"], "uid": body["metadata"]["uid"],
                        "controller": True, "blockOwnerDeletion": True}],
                },
                "spec": {**template["spec"], "hostname": name,
                         "subdomain": spec.get("serviceName")},
            }
            try:
                cluster.core.create_namespaced_pod(namespace, pod)
            except ApiException as error:
                if error.status != 409:
                    raise
        # the status a StatefulSet controller keeps, which the LWS controller reads
        owned = [p for p in cluster.pods(namespace)
                 if any(o["uid"] == body["metadata"]["uid"]
                        for o in p["metadata"].get("ownerReferences") or [])]
        cluster.apps.patch_namespaced_stateful_set_status(
            body["metadata"]["name"], namespace,
            {"status": {"replicas": len(owned), "readyReplicas": sum(map(is_ready, owned)),
                        "availableReplicas": sum(map(is_ready, owned))}})


def lws(name: str) -> dict[str, Any]:
    container = {"name": "app", "image": "registry.example.com/app:1",
                 "ports": [{"containerPort": 8080}],
                 "env": [{"name": "PEER", "value": "$(LWS_LEADER_ADDRESS)"}]}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {
            "size": 3, "workerTemplate": {"spec": {"containers": [container]}}}},
    }


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_lws_groups_form_with_a_foreign_statefulset_controller(cluster: SimCluster) -> None:
    namespace = cluster.namespace("lws-foreign")
    cluster.custom.create_namespaced_custom_object(
        "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", lws("group"))

    def available() -> dict[str, Any] | None:
        stand_in_statefulset_controller(cluster, namespace)
        found = cluster.custom_object("leaderworkerset.x-k8s.io", "v1", namespace,
                                      "leaderworkersets", "group")
        state = condition(found, "Available")
        return found if state is not None and state["status"] == "True" else None

    wait_for(available, 60, "the LeaderWorkerSet to be Available", interval=0.2)
    leader = cluster.pod(namespace, "group-0")
    assert leader is not None
    labels = leader["metadata"]["labels"]
    assert labels[f"{LWS_LABEL}/group-index"] == "0"
    assert labels[f"{LWS_LABEL}/worker-index"] == "0"
    assert len(labels[f"{LWS_LABEL}/group-key"]) == 40
    assert env_of(leader) == {"LWS_LEADER_ADDRESS": f"group-0.group.{namespace}",
                              "LWS_GROUP_SIZE": "3", "LWS_WORKER_INDEX": "0",
                              "PEER": "$(LWS_LEADER_ADDRESS)"}
    # the agent's LWS controller made the worker StatefulSet; the stand-in made its pods
    workers = cluster.apps.read_namespaced_stateful_set("group-0", namespace)
    assert workers.metadata.owner_references[0].name == "group-0"
    for index in (1, 2):
        worker = cluster.pod(namespace, f"group-0-{index}")
        assert worker is not None
        worker_labels = worker["metadata"]["labels"]
        assert worker_labels[f"{LWS_LABEL}/worker-index"] == str(index)
        assert worker_labels[f"{LWS_LABEL}/group-key"] == labels[f"{LWS_LABEL}/group-key"]
        assert env_of(worker)["LWS_WORKER_INDEX"] == str(index)
        assert env_of(worker)["LWS_LEADER_ADDRESS"] == f"group-0.group.{namespace}"


def test_pods_without_the_lws_label_are_left_alone(cluster: SimCluster) -> None:
    namespace = cluster.namespace("plain")
    cluster.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "plain-0", "labels": {"app": "plain"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}})
    pod = cluster.pod(namespace, "plain-0")
    assert pod is not None
    assert pod["metadata"]["labels"] == {"app": "plain"}
    assert "env" not in pod["spec"]["containers"][0]


def test_the_webhook_exists_only_where_lws_is_served(tmp_path_factory: pytest.TempPathFactory,
                                                     cluster: SimCluster) -> None:
    # a second cluster without the LWS CRD: a pod with the label is stored as sent
    bare = start_cluster(tmp_path_factory.mktemp("no-lws"), "h200-2node", "--controllers",
                         "scheduler")
    try:
        namespace = bare.namespace("bare")
        bare.core.create_namespaced_pod(namespace, {
            "metadata": {"name": "x-0", "labels": {f"{LWS_LABEL}/name": "x"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}})
        pod = bare.pod(namespace, "x-0")
        assert pod is not None
        assert pod["metadata"]["labels"] == {f"{LWS_LABEL}/name": "x"}
    finally:
        bare.stop()


def test_the_agent_serves_the_pod_webhook_for_api_servers_that_call_webhooks(
        cluster: SimCluster) -> None:
    """Next to a real kube-apiserver the agent's webhook does the mutation; here the request a
    kube-apiserver would send is made directly (clustersim's server calls no webhooks, so the
    agent does not register it there)."""
    info = json.loads(http("GET", cluster.admin_url + "/info")[1])
    webhook = info["lwsPodWebhook"]
    assert webhook["registered"] is False
    assert webhook["url"].startswith("https://127.0.0.1:")
    pod = {"metadata": {"name": "web-1-2", "labels": {f"{LWS_LABEL}/name": "web"},
                        "annotations": {f"{LWS_LABEL}/size": "3",
                                        f"{LWS_LABEL}/leader-name": "web-1"}},
           "spec": {"subdomain": "web", "containers": [{"name": "app", "image": "x"}]}}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "abc", "namespace": "team", "operation": "CREATE",
                          "object": pod}}
    verified = ssl.create_default_context(cafile=info["kubeletCA"])
    request = urllib.request.Request(webhook["url"], data=json.dumps(review).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=verified, timeout=10) as answer:
        response = json.loads(answer.read())["response"]
    assert response["uid"] == "abc" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = copy.deepcopy(pod)
    for operation in json.loads(base64.b64decode(response["patch"])):
        assert operation["op"] == "add"
        _, section, field = operation["path"].split("/")
        patched[section][field] = operation["value"]
    assert patched["metadata"]["labels"][f"{LWS_LABEL}/worker-index"] == "2"
    assert env_of(patched) == {"LWS_LEADER_ADDRESS": "web-1.web.team", "LWS_GROUP_SIZE": "3",
                               "LWS_WORKER_INDEX": "2"}
    # a pod the webhook has nothing to add to gets no patch
    plain = {**review, "request": {**review["request"], "object": patched}}
    request = urllib.request.Request(webhook["url"], data=json.dumps(plain).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=verified, timeout=10) as answer:
        assert "patch" not in json.loads(answer.read())["response"]
