"""Resource quantities of built-in kinds are stored and served in their canonical string form, as
a real API server's decoder leaves them, so typed clients can read them; custom resources keep
what their schema allows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from apiserver_process import RunningApiServer, wait_until
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from clustersim.quantity import canonical_quantity

APPLY = "application/apply-patch+yaml"
GROUP = "qty.example.com"

SENT = {
    "limits": {"nvidia.com/gpu": 8, "rdma/ib": 1, "memory": "512Gi", "cpu": 0.5},
    "requests": {"cpu": 32, "nvidia.com/gpu": "8", "rdma/ib": 1, "memory": "1024Mi"},
}
CANONICAL = {
    "limits": {"nvidia.com/gpu": "8", "rdma/ib": "1", "memory": "512Gi", "cpu": "500m"},
    "requests": {"cpu": "32", "nvidia.com/gpu": "8", "rdma/ib": "1", "memory": "1Gi"},
}


def pod_spec() -> dict[str, Any]:
    return {
        "initContainers": [
            {"name": "sidecar", "image": "proxy:1", "restartPolicy": "Always",
             "resources": {"requests": {"cpu": 1.5}}}
        ],
        "containers": [{"name": "vllm", "image": "vllm:1", "resources": SENT}],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": 2048}}],
    }


def test_canonical_quantity_strings() -> None:
    cases = {
        32: "32", 1: "1", 0.5: "500m", "512Gi": "512Gi", "1.5": "1500m", "1000": "1k",
        "1.5Gi": "1536Mi", "1024Mi": "1Gi", "0.5Gi": "512Mi", "1e3": "1e3", "100m": "100m",
        "0": "0", "2048": "2048", "0.1n": "1n", "-1.5": "-1500m",
    }
    assert {value: canonical_quantity(value) for value in cases} == cases


def test_pod_quantities_sent_as_numbers_are_stored_as_canonical_strings(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    created = apiserver.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        {"metadata": {"name": "gpu"}, "spec": pod_spec()},
    )
    assert created.status == 201, created.body
    raw = apiserver.request("GET", f"/api/v1/namespaces/{namespace}/pods/gpu").json()
    assert raw["spec"]["containers"][0]["resources"] == CANONICAL
    assert raw["spec"]["initContainers"][0]["resources"] == {"requests": {"cpu": "1500m"}}
    assert raw["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "2048"
    assert created.json()["spec"]["containers"][0]["resources"] == CANONICAL
    # the typed client (pydantic models with StrictStr quantities) reads the pod
    typed = k8s.CoreV1Api(api_client).read_namespaced_pod("gpu", namespace)
    assert typed.spec.containers[0].resources.requests == CANONICAL["requests"]
    listed = k8s.CoreV1Api(api_client).list_namespaced_pod(namespace)
    assert [p.metadata.name for p in listed.items] == ["gpu"]
    # an update sending the numbers again is no change
    same = apiserver.request(
        "PUT",
        f"/api/v1/namespaces/{namespace}/pods/gpu",
        {**raw, "spec": {**raw["spec"], "containers": [
            {**raw["spec"]["containers"][0], "resources": SENT}]}},
    )
    assert same.status == 200, same.body
    assert same.json()["metadata"]["resourceVersion"] == raw["metadata"]["resourceVersion"]


def test_pod_templates_and_claim_templates_of_workloads_are_normalised(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    template = {"metadata": {"labels": {"app": "w"}}, "spec": pod_spec()}
    apps = k8s.AppsV1Api(api_client)
    # sent raw: the typed client would refuse to send numbers where quantities go
    workloads = f"/apis/apps/v1/namespaces/{namespace}"
    deployment_body = {
        "metadata": {"name": "w"},
        "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template},
    }
    created = apiserver.request("POST", f"{workloads}/deployments", deployment_body)
    assert created.status == 201, created.body
    stateful_set_body = {
        "metadata": {"name": "w"},
        "spec": {"selector": {"matchLabels": {"app": "w"}}, "serviceName": "w",
                 "template": template,
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": 10737418240}}}}]},
    }
    created = apiserver.request("POST", f"{workloads}/statefulsets", stateful_set_body)
    assert created.status == 201, created.body
    deployment = apps.read_namespaced_deployment("w", namespace)
    assert deployment.spec.template.spec.containers[0].resources.limits == CANONICAL["limits"]
    stateful_set = apps.read_namespaced_stateful_set("w", namespace)
    assert stateful_set.spec.template.spec.containers[0].resources.requests == \
        CANONICAL["requests"]
    claim = stateful_set.spec.volume_claim_templates[0]
    assert claim.spec.resources.requests == {"storage": "10737418240"}


def test_node_capacity_and_allocatable_are_normalised_on_status_writes(
    apiserver: RunningApiServer, api_client: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(api_client)
    name = f"qty-node-{uuid.uuid4().hex[:6]}"
    core.create_node({"metadata": {"name": name}})
    try:
        patched = apiserver.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {"status": {"capacity": {"cpu": 128, "nvidia.com/gpu": 8, "pods": 110},
                        "allocatable": {"cpu": 127.5, "memory": "2Ti", "rdma/ib": 1000}}},
            content_type="application/merge-patch+json",
        )
        assert patched.status == 200, patched.body
        node = core.read_node(name)
        assert node.status.capacity == {"cpu": "128", "nvidia.com/gpu": "8", "pods": "110"}
        assert node.status.allocatable == {"cpu": "127500m", "memory": "2Ti", "rdma/ib": "1k"}
    finally:
        core.delete_node(name)


def test_a_value_that_is_not_a_quantity_is_a_400_decoding_error(
    apiserver: RunningApiServer, namespace: str
) -> None:
    spec = pod_spec()
    spec["containers"][0]["resources"] = {"requests": {"cpu": "eight"}}
    answer = apiserver.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods", {"metadata": {"name": "bad"}, "spec": spec}
    )
    assert answer.status == 400
    assert answer.json()["message"] == (
        'Pod in version "v1" cannot be handled as a Pod: quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


def test_server_side_apply_of_numbers_matches_the_stored_strings(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "applied"},
        "spec": {"containers": [{"name": "vllm", "image": "vllm:1", "resources": SENT}]},
    }
    path = f"/api/v1/namespaces/{namespace}/pods/applied?fieldManager="
    first = apiserver.request("PATCH", path + "one", body, content_type=APPLY)
    assert first.status == 201, first.body
    again = apiserver.request("PATCH", path + "one", body, content_type=APPLY)
    assert again.json()["metadata"]["resourceVersion"] == first.json()["metadata"][
        "resourceVersion"]
    # another manager applying the same values does not conflict with the first one
    other = apiserver.request("PATCH", path + "two", body, content_type=APPLY)
    assert other.status == 200, other.body
    typed = k8s.CoreV1Api(api_client).read_namespaced_pod("applied", namespace)
    assert typed.spec.containers[0].resources.limits == CANONICAL["limits"]


@pytest.fixture()
def int_or_string_crd(
    apiserver: RunningApiServer, api_client: k8s.ApiClient
) -> Iterator[str]:
    plural = f"jobs{uuid.uuid4().hex[:6]}"
    quantity = {"x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}]}
    extensions = k8s.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": "Job" + plural[4:]},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object", "properties": {"requests": {
                        "type": "object", "additionalProperties": quantity}}}}}}}],
        },
    })
    wait_until(lambda: apiserver.request("GET", f"/apis/{GROUP}/v1").status == 200)
    yield plural
    try:
        extensions.delete_custom_resource_definition(f"{plural}.{GROUP}")
    except ApiException as error:
        if error.status != 404:
            raise


def test_custom_resources_keep_int_or_string_quantities_as_sent(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str,
    int_or_string_crd: str,
) -> None:
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/{int_or_string_crd}"
    created = apiserver.request(
        "POST", path, {"apiVersion": f"{GROUP}/v1", "kind": "Job" + int_or_string_crd[4:],
                       "metadata": {"name": "j"},
                       "spec": {"requests": {"cpu": 32, "memory": "1024Mi"}}},
    )
    assert created.status == 201, created.body
    stored = apiserver.request("GET", f"{path}/j").json()
    assert stored["spec"]["requests"] == {"cpu": 32, "memory": "1024Mi"}
