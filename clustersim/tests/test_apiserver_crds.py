"""CustomResourceDefinitions: served versions, schema pruning and defaults, printer columns,
discovery, and cleanup when the CRD goes away."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from apiserver_process import RunningApiServer, wait_until
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

GROUP = "sim.example.com"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "default": 1, "minimum": 0},
                "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                    },
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def crd_body(plural: str) -> dict[str, Any]:
    kind = plural[:-1].capitalize()
    version: dict[str, Any] = {
        "served": True,
        "schema": {"openAPIV3Schema": SCHEMA},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [
            {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind, "shortNames": [plural[:3]]},
            "versions": [
                {**version, "name": "v1", "storage": True},
                {**version, "name": "v1beta1", "storage": False},
            ],
        },
    }


@pytest.fixture()
def crd(apiserver: RunningApiServer, api_client: k8s.ApiClient) -> Iterator[tuple[str, str]]:
    plural = f"models{uuid.uuid4().hex[:6]}"
    extensions = k8s.ApiextensionsV1Api(api_client)
    body = crd_body(plural)
    extensions.create_custom_resource_definition(body)
    kind = str(body["spec"]["names"]["kind"])
    wait_until(lambda: apiserver.request("GET", f"/apis/{GROUP}/v1").status == 200)
    yield plural, kind
    try:
        extensions.delete_custom_resource_definition(f"{plural}.{GROUP}")
    except ApiException as error:
        if error.status != 404:
            raise


def test_schema_defaults_pruning_and_validation(
    api_client: k8s.ApiClient, namespace: str, crd: tuple[str, str]
) -> None:
    plural, kind = crd
    custom = k8s.CustomObjectsApi(api_client)
    created = custom.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        plural,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": kind,
            "metadata": {"name": "m"},
            "spec": {"model": "deepseek", "dropped": True, "extra": {"kept": {"deep": 1}}},
        },
    )
    assert created["spec"] == {
        "model": "deepseek",
        "replicas": 1,
        "mode": "safe",
        "extra": {"kept": {"deep": 1}},
    }
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(
            GROUP,
            "v1",
            namespace,
            plural,
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": kind,
                "metadata": {"name": "bad"},
                "spec": {
                    "model": "",
                    "replicas": -1,
                    "mode": "reckless",
                    "ports": [{"name": "a"}, {"name": "a"}],
                },
            },
        )
    assert error.value.status == 422
    causes = {c["field"]: c["reason"] for c in json.loads(error.value.body)["details"]["causes"]}
    assert causes == {
        "spec.model": "FieldValueInvalid",
        "spec.replicas": "FieldValueInvalid",
        "spec.mode": "FieldValueNotSupported",
        "spec.ports[1]": "FieldValueDuplicate",
    }


def test_every_served_version_reads_the_one_stored_object(
    api_client: k8s.ApiClient, namespace: str, crd: tuple[str, str]
) -> None:
    plural, kind = crd
    custom = k8s.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(
        GROUP,
        "v1beta1",
        namespace,
        plural,
        {
            "apiVersion": f"{GROUP}/v1beta1",
            "kind": kind,
            "metadata": {"name": "old"},
            "spec": {"model": "m"},
        },
    )
    as_v1 = custom.get_namespaced_custom_object(GROUP, "v1", namespace, plural, "old")
    assert as_v1["apiVersion"] == f"{GROUP}/v1"
    listed = custom.list_namespaced_custom_object(GROUP, "v1beta1", namespace, plural)
    assert listed["items"][0]["apiVersion"] == f"{GROUP}/v1beta1"


def test_printer_columns_answer_tables(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str, crd: tuple[str, str]
) -> None:
    plural, kind = crd
    custom = k8s.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        plural,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": kind,
            "metadata": {"name": "t"},
            "spec": {"model": "qwen", "replicas": 2},
        },
    )
    custom.patch_namespaced_custom_object_status(
        GROUP,
        "v1",
        namespace,
        plural,
        "t",
        {"status": {"phase": "Serving"}},
        _content_type="application/merge-patch+json",
    )
    path = f"/apis/{GROUP}/v1/namespaces/{namespace}/{plural}"
    assert apiserver.request("GET", path).json()["kind"] == f"{kind}List"
    response = apiserver.request("GET", path, accept=TABLE)
    assert response.headers["Content-Type"].startswith("application/json;as=Table")
    table = response.json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Model", "Replicas", "Phase"]
    assert table["rows"][0]["cells"] == ["t", "qwen", 2, "Serving"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_crd_appears_in_aggregated_discovery(
    apiserver: RunningApiServer, crd: tuple[str, str]
) -> None:
    plural, kind = crd
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    response = apiserver.request("GET", "/apis", accept=accept)
    assert "apidiscovery.k8s.io;v=v2" in response.headers["Content-Type"]
    document = response.json()
    group = next(g for g in document["items"] if g["metadata"]["name"] == GROUP)
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    served = {r["resource"]: r for r in group["versions"][0]["resources"]}
    assert served[plural]["responseKind"]["kind"] == kind
    assert served[plural]["subresources"][0]["subresource"] == "status"


def test_deleting_a_crd_removes_its_objects_and_its_kind(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str, crd: tuple[str, str]
) -> None:
    plural, kind = crd
    custom = k8s.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        plural,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": kind,
            "metadata": {"name": "doomed"},
            "spec": {"model": "m"},
        },
    )
    k8s.ApiextensionsV1Api(api_client).delete_custom_resource_definition(f"{plural}.{GROUP}")
    wait_until(
        lambda: (
            apiserver.request("GET", f"/apis/{GROUP}/v1/namespaces/{namespace}/{plural}").status
            == 404
        )
    )
    gone = apiserver.request(
        "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{GROUP}"
    )
    assert gone.status == 404
