"""LeaderWorkerSet objects through the real LWS v0.7.0 CRD, with the kubernetes client."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver_process import RunningApiServer, wait_until
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.rest import ApiException
from shared_reference import reference_dir

GROUP = "leaderworkerset.x-k8s.io"
VERSION = "v1"
PLURAL = "leaderworkersets"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def install_crds(apiserver: RunningApiServer, files: list[Path]) -> None:
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            name = document["metadata"]["name"]
            response = apiserver.request(
                "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                "?fieldManager=tests&force=true",
                json.dumps(document).encode(),
                content_type=APPLY,
            )
            assert response.status in (200, 201), response.body[:500]


@pytest.fixture(scope="session")
def lws_crd(apiserver: RunningApiServer) -> str:
    reference = reference_dir()
    install_crds(apiserver, sorted((reference / "crds" / "lws-v0.7.0").glob("*.yaml")))
    name = f"{PLURAL}.{GROUP}"
    wait_until(
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in apiserver.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            .json()
            .get("status", {})
            .get("conditions", [])
        )
    )
    return name


@pytest.fixture()
def custom(api_client: k8s.ApiClient, lws_crd: str) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(api_client)


def lws(name: str, size: Any = 2, replicas: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "labels": {"llm-d.ai/role": "decode"}},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "size": size,
                "workerTemplate": {
                    "metadata": {"labels": {"llm-d.ai/role": "decode"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "vllm",
                                "image": "vllm/vllm:0.10",
                                "ports": [{"containerPort": 8000}],
                            }
                        ]
                    },
                },
            },
        },
    }
    body["spec"].update(spec)
    return body


def status_of(error: ApiException) -> dict[str, Any]:
    return dict(json.loads(error.body))


def test_crd_is_established_and_served_in_discovery(
    apiserver: RunningApiServer, lws_crd: str
) -> None:
    crd = apiserver.request(
        "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{lws_crd}"
    ).json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    resources = apiserver.request("GET", f"/apis/{GROUP}/{VERSION}").json()["resources"]
    names = {r["name"]: r for r in resources}
    assert names[PLURAL]["shortNames"] == ["lws"]
    assert set(names) == {PLURAL, f"{PLURAL}/scale", f"{PLURAL}/status"}


def test_lws_gets_schema_and_webhook_defaults(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, lws("defaults")
    )
    spec = created["spec"]
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["networkConfig"] == {"subdomainPolicy": "Shared"}
    assert spec["rolloutStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0, "partition": 0},
    }
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert created["metadata"]["generation"] == 1
    assert "status" not in created


def test_deprecated_default_restart_policy_maps_to_none(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    body = lws("legacy")
    body["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Default"
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert created["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "None"


def test_lws_with_size_as_a_string_is_rejected_naming_the_field(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, lws("bad-size", size="two")
        )
    assert error.value.status == 422
    status = status_of(error.value)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'LeaderWorkerSet.leaderworkerset.x-k8s.io "bad-size" is invalid: '
        'spec.leaderWorkerTemplate.size: Invalid value: "string": '
        'spec.leaderWorkerTemplate.size in body must be of type integer: "string"'
    )
    assert status["details"]["causes"][0]["field"] == "spec.leaderWorkerTemplate.size"


def test_lws_with_unknown_spec_field_is_rejected_under_strict_validation(
    apiserver: RunningApiServer, lws_crd: str, namespace: str
) -> None:
    body = lws("bad-field", partitions=3)
    response = apiserver.request(
        "POST",
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}?fieldValidation=Strict",
        body,
    )
    assert response.status == 422
    status = response.json()
    assert 'unknown field "spec.partitions"' in status["message"]
    assert status["details"]["causes"][0]["field"] == "spec.partitions"
    applied = apiserver.request(
        "PATCH",
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/bad-field"
        "?fieldManager=tests&fieldValidation=Strict",
        body,
        content_type=APPLY,
    )
    assert applied.status == 422
    warned = apiserver.request(
        "POST", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", body
    )
    assert warned.status == 201
    assert "partitions" not in warned.json()["spec"]
    assert 'unknown field \\"spec.partitions\\"' in warned.headers["Warning"]


def test_lws_name_too_long_for_generated_names_is_rejected(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    name = "d" * 51
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws(name))
    assert error.value.status == 422
    status = status_of(error.value)
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    assert "must be no more than 50 characters" in status["message"]
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws("d" * 50))


def test_lws_name_must_be_a_dns1035_label(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    with pytest.raises(ApiException) as error:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws("0-decode"))
    assert error.value.status == 422
    assert "DNS-1035" in status_of(error.value)["message"]


def test_lws_webhook_rules_on_create_and_update(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    frozen = lws(
        "frozen",
        rolloutStrategy={
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 0},
        },
    )
    with pytest.raises(ApiException) as rollout_error:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, frozen)
    assert rollout_error.value.status == 422
    assert "maxSurge" in status_of(rollout_error.value)["message"]
    grouped = lws("grouped", size=4)
    grouped["spec"]["leaderWorkerTemplate"]["subGroupPolicy"] = {"subGroupSize": 2}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, grouped)
    with pytest.raises(ApiException) as immutable_error:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "grouped",
            {"spec": {"leaderWorkerTemplate": {"subGroupPolicy": {"subGroupSize": 4}}}},
            _content_type=MERGE,
        )
    assert immutable_error.value.status == 422
    assert "subGroupSize" in status_of(immutable_error.value)["message"]
    with pytest.raises(ApiException) as null_error:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "grouped",
            {"spec": {"networkConfig": {"subdomainPolicy": None}}}, _content_type=MERGE)
    assert null_error.value.status == 422
    assert "spec.networkConfig.subdomainPolicy" in status_of(null_error.value)["message"]
    resized = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "grouped",
        {"spec": {"leaderWorkerTemplate": {"size": 6}}},
        _content_type=MERGE,
    )
    assert resized["spec"]["leaderWorkerTemplate"]["size"] == 6


def test_lws_crud_selectors_and_stale_update(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws("decode"))
    prefill = lws("prefill", size=1)
    prefill["metadata"]["labels"] = {"llm-d.ai/role": "prefill"}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, prefill)
    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector="llm-d.ai/role=prefill"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["prefill"]
    by_name = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, field_selector="metadata.name=decode"
    )
    assert [i["metadata"]["name"] for i in by_name["items"]] == ["decode"]
    stale = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "decode")
    fresh = copy.deepcopy(stale)
    fresh["spec"]["replicas"] = 2
    replaced = custom.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "decode", fresh
    )
    assert replaced["metadata"]["generation"] == 2
    stale["spec"]["replicas"] = 3
    with pytest.raises(ApiException) as error:
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "decode", stale)
    assert error.value.status == 409
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "prefill")
    remaining = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert [i["metadata"]["name"] for i in remaining["items"]] == ["decode"]


def test_lws_watch_resumes_from_resource_version(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws("watched"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "watched", {"spec": {"replicas": 2}}, _content_type=MERGE
    )
    seen = [
        (e["type"], e["object"]["spec"]["replicas"])
        for e in watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=1,
        )
    ]
    assert seen == [("ADDED", 1), ("MODIFIED", 2)]


def test_lws_patch_types_and_strategic_merge_is_unsupported(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws("patched"))
    merged = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "patched",
        {"spec": {"rolloutStrategy": {"rollingUpdateConfiguration": {"partition": 1}}}},
        _content_type=MERGE,
    )
    assert merged["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["partition"] == 1
    assert merged["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxUnavailable"] == 1
    json_patched = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "patched",
        [{"op": "replace", "path": "/spec/leaderWorkerTemplate/size", "value": 4}],
        _content_type=JSON_PATCH,
    )
    assert json_patched["spec"]["leaderWorkerTemplate"]["size"] == 4
    with pytest.raises(ApiException) as error:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "patched",
            {"spec": {"replicas": 2}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert error.value.status == 415


def test_lws_server_side_apply_conflicts_and_force(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    # an apply that creates answers 201, which the client's custom-object API maps to None
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "applied",
        lws("applied"),
        field_manager="rollout",
        _content_type=APPLY,
    )
    applied = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "applied")
    assert applied["spec"]["replicas"] == 1
    assert [(m["manager"], m["operation"]) for m in applied["metadata"]["managedFields"]] == [
        ("rollout", "Apply")
    ]
    scaler = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "applied"},
        "spec": {"replicas": 3},
    }
    with pytest.raises(ApiException) as error:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "applied",
            scaler,
            field_manager="autoscaler",
            _content_type=APPLY,
        )
    assert error.value.status == 409
    assert status_of(error.value)["details"]["causes"][0]["field"] == ".spec.replicas"
    forced = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "applied",
        scaler,
        field_manager="autoscaler",
        force=True,
        _content_type=APPLY,
    )
    assert forced["spec"]["replicas"] == 3
    assert forced["spec"]["leaderWorkerTemplate"]["size"] == 2
    image_bump = lws("applied")
    image_bump["spec"].pop("replicas")
    image_bump["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0][
        "image"
    ] = "vllm/vllm:0.11"
    bumped = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "applied",
        image_bump,
        field_manager="rollout",
        _content_type=APPLY,
    )
    container = bumped["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    assert container["image"] == "vllm/vllm:0.11" and bumped["spec"]["replicas"] == 3


def test_lws_status_and_scale_subresources(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws("sub"))
    status = {
        "status": {
            "replicas": 1,
            "readyReplicas": 1,
            "updatedReplicas": 1,
            "hpaPodSelector": "leaderworkerset.sigs.k8s.io/name=sub",
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "AllGroupsReady",
                    "message": "All replicas are ready",
                    "lastTransitionTime": "2025-07-26T00:00:00Z",
                }
            ],
        },
        "spec": {"replicas": 9},
    }
    written = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "sub", status, _content_type=MERGE
    )
    assert written["status"]["readyReplicas"] == 1 and written["spec"]["replicas"] == 1
    assert written["metadata"]["generation"] == 1
    ignored = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "sub",
        {"status": {"readyReplicas": 0}},
        _content_type=MERGE,
    )
    assert ignored["status"]["readyReplicas"] == 1
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "sub")
    assert scale["spec"]["replicas"] == 1
    assert scale["status"]["selector"] == "leaderworkerset.sigs.k8s.io/name=sub"
    custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, "sub", {"spec": {"replicas": 2}}, _content_type=MERGE
    )
    assert (
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "sub")["spec"][
            "replicas"
        ]
        == 2
    )


def test_lws_owns_its_statefulset_through_owner_references(
    api_client: k8s.ApiClient, custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, lws("owner"))
    apps = k8s.AppsV1Api(api_client)
    apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {
                "name": "owner",
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "LeaderWorkerSet",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "serviceName": "owner",
                "selector": {"matchLabels": {"app": "owner"}},
                "template": {
                    "metadata": {"labels": {"app": "owner"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
                },
            },
        },
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")

    def statefulset_gone() -> bool:
        try:
            apps.read_namespaced_stateful_set("owner", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_until(statefulset_gone)


def test_every_rendered_leaderworkerset_is_accepted(
    apiserver: RunningApiServer, lws_crd: str, namespace: str
) -> None:
    rendered = reference_dir() / "rendered"
    found = 0
    for path in sorted(rendered.glob("ms-wide-ep*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "LeaderWorkerSet":
                continue
            found += 1
            name = document["metadata"]["name"]
            response = apiserver.request(
                "PATCH",
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
                "?fieldManager=tests&fieldValidation=Strict",
                json.dumps(document).encode(),
                content_type=APPLY,
            )
            assert response.status in (200, 201), response.body[:400]
    assert found == 4
