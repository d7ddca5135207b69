"""The official `kubernetes` Python client against clustersim's API server, over real HTTPS."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from apiserver_process import RunningApiServer, wait_until
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.rest import ApiException

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def body_of(error: ApiException) -> dict[str, Any]:
    return dict(json.loads(error.body))


def config_map(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def deployment(name: str, image: str = "nginx:1.27", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "A", "value": "1"}],
                        }
                    ]
                },
            },
        },
    }


# -- CRUD ---------------------------------------------------------------------------------------


def test_config_map_crud_round_trip(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    created = core.create_namespaced_config_map(namespace, config_map("settings", k="v"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0
    read = core.read_namespaced_config_map("settings", namespace)
    assert read.data == {"k": "v"}
    read.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("settings", namespace, read)
    assert replaced.data == {"k": "w"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    core.delete_namespaced_config_map("settings", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("settings", namespace)
    assert missing.value.status == 404
    assert body_of(missing.value)["message"] == 'configmaps "settings" not found'


def test_create_twice_answers_409_already_exists(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, config_map("twice"))
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map(namespace, config_map("twice"))
    assert error.value.status == 409
    assert body_of(error.value)["reason"] == "AlreadyExists"


def test_generate_name_creates_a_unique_name(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}})
    second = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}})
    assert first.metadata.name.startswith("gen-") and len(first.metadata.name) == 9
    assert first.metadata.name != second.metadata.name


def test_update_with_stale_resource_version_is_a_409_conflict(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    stale = core.create_namespaced_config_map(namespace, config_map("race", k="1"))
    fresh = core.read_namespaced_config_map("race", namespace)
    fresh.data = {"k": "2"}
    core.replace_namespaced_config_map("race", namespace, fresh)
    stale.data = {"k": "3"}
    with pytest.raises(ApiException) as error:
        core.replace_namespaced_config_map("race", namespace, stale)
    assert error.value.status == 409
    status = body_of(error.value)
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    assert core.read_namespaced_config_map("race", namespace).data == {"k": "2"}


def test_namespaced_write_into_missing_namespace_is_404(api_client: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api_client)
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map("no-such-namespace", config_map("x"))
    assert error.value.status == 404
    assert body_of(error.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_invalid_names_are_rejected_with_422(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map(namespace, config_map("Not_Valid"))
    assert error.value.status == 422
    status = body_of(error.value)
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    assert "RFC 1123 subdomain" in status["message"]
    with pytest.raises(ApiException) as service_error:
        core.create_namespaced_service(
            namespace, {"metadata": {"name": "1service"}, "spec": {"ports": [{"port": 80}]}}
        )
    assert service_error.value.status == 422
    assert "DNS-1035" in body_of(service_error.value)["message"]


def test_dry_run_create_stores_nothing(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    shown = core.create_namespaced_config_map(namespace, config_map("dry", k="v"), dry_run="All")
    assert shown.data == {"k": "v"}
    with pytest.raises(ApiException) as error:
        core.read_namespaced_config_map("dry", namespace)
    assert error.value.status == 404


# -- lists and selectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("tier in (web,db)", ["a", "b", "c"]),
        ("tier notin (web)", ["c", "d"]),
        ("canary", ["b"]),
        ("!canary", ["a", "c", "d"]),
        ("tier=web,canary", ["b"]),
    ],
)
def test_list_filters_by_each_label_selector_form(
    api_client: k8s.ApiClient, labelled_namespace: str, selector: str, expected: list[str]
) -> None:
    core = k8s.CoreV1Api(api_client)
    found = core.list_namespaced_config_map(labelled_namespace, label_selector=selector)
    assert sorted(item.metadata.name for item in found.items) == expected


@pytest.fixture(scope="module")
def labelled_namespace(api_client: k8s.ApiClient) -> Any:
    core = k8s.CoreV1Api(api_client)
    name = f"sel-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, config_map("a", {"tier": "web"}))
    core.create_namespaced_config_map(name, config_map("b", {"tier": "web", "canary": "yes"}))
    core.create_namespaced_config_map(name, config_map("c", {"tier": "db"}))
    core.create_namespaced_config_map(name, config_map("d", {"other": "x"}))
    yield name
    core.delete_namespace(name)


def test_field_selectors_on_name_namespace_and_pod_fields(
    api_client: k8s.ApiClient, labelled_namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    by_name = core.list_namespaced_config_map(labelled_namespace, field_selector="metadata.name=c")
    assert [i.metadata.name for i in by_name.items] == ["c"]
    not_name = core.list_namespaced_config_map(
        labelled_namespace, field_selector="metadata.name!=c"
    )
    assert sorted(i.metadata.name for i in not_name.items) == ["a", "b", "d"]
    everywhere = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={labelled_namespace}"
    )
    assert len(everywhere.items) == 4
    core.create_namespaced_pod(
        labelled_namespace,
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        },
    )
    pending = core.list_namespaced_pod(labelled_namespace, field_selector="status.phase=Pending")
    assert [p.metadata.name for p in pending.items] == ["p"]
    unbound = core.list_namespaced_pod(labelled_namespace, field_selector="spec.nodeName=")
    assert [p.metadata.name for p in unbound.items] == ["p"]
    with pytest.raises(ApiException) as error:
        core.list_namespaced_config_map(labelled_namespace, field_selector="data.a=b")
    assert error.value.status == 400


def test_list_pages_with_limit_and_continue(
    api_client: k8s.ApiClient, labelled_namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    first = core.list_namespaced_config_map(labelled_namespace, limit=3)
    assert [i.metadata.name for i in first.items] == ["a", "b", "c"]
    assert first.metadata.remaining_item_count == 1
    second = core.list_namespaced_config_map(
        labelled_namespace, limit=3, _continue=first.metadata._continue
    )
    assert [i.metadata.name for i in second.items] == ["d"]
    assert not second.metadata._continue


# -- watch --------------------------------------------------------------------------------------


def test_watch_resumes_from_resource_version(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, config_map("before"))
    listed = core.list_namespaced_config_map(namespace)
    core.create_namespaced_config_map(namespace, config_map("after", k="1"))
    core.patch_namespaced_config_map("after", namespace, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("after", namespace)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    ):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]


def test_watch_without_resource_version_starts_with_current_objects(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, config_map("existing"))
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=1)
    ]
    assert ("ADDED", "existing") in seen


def test_watch_from_compacted_resource_version_answers_410_gone(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    old = core.create_namespaced_config_map(namespace, config_map("old"))
    core.create_namespaced_config_map(namespace, config_map("newer"))
    apiserver.admin("POST", "/compact", b"{}")
    with pytest.raises(ApiException) as error:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=old.metadata.resource_version,
            timeout_seconds=2,
        ):
            pass
    assert error.value.status == 410
    assert "too old resource version" in str(error.value.reason)


def test_watch_sends_bookmarks_when_allowed(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    listed = core.list_namespaced_config_map(namespace)
    response = core.list_namespaced_config_map(
        namespace,
        watch=True,
        allow_watch_bookmarks=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        resource_version="",
        timeout_seconds=1,
        _preload_content=False,
    )
    lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    bookmarks = [event for event in lines if event["type"] == "BOOKMARK"]
    assert bookmarks
    end = bookmarks[0]["object"]["metadata"]
    assert end["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(end["resourceVersion"]) >= int(listed.metadata.resource_version)


def test_watch_with_label_selector_sees_objects_leave_and_enter(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    listed = core.list_namespaced_config_map(namespace)
    core.create_namespaced_config_map(namespace, config_map("m", {"team": "a"}))
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"team": "b"}}})
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"team": "a"}}})
    seen = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            label_selector="team=a",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert seen == ["ADDED", "DELETED", "ADDED"]


def test_a_quiet_watch_is_dropped_soon_after_its_client_leaves(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)

    def watches() -> int:
        return int(apiserver.admin("GET", "/state").json()["watches"])

    before = watches()
    response = core.list_namespaced_config_map(
        namespace, watch=True, timeout_seconds=600, _preload_content=False
    )
    wait_until(lambda: watches() == before + 1)
    response.close()  # the client leaves while nothing happens in the namespace
    wait_until(lambda: watches() == before, timeout=5)


# -- patches ------------------------------------------------------------------------------------


def test_json_patch_merge_patch_and_strategic_merge_patch(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web"))
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels", "value": {"patched": "json"}},
        ],
        _content_type=JSON_PATCH,
    )
    assert patched.spec.replicas == 3 and patched.metadata.labels == {"patched": "json"}
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"metadata": {"labels": {"patched": None, "merge": "yes"}}},
        _content_type=MERGE,
    )
    assert patched.metadata.labels == {"merge": "yes"}
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.28",
                                "env": [{"name": "B", "value": "2"}],
                            },
                            {"name": "sidecar", "image": "busybox:1.36"},
                        ]
                    }
                }
            }
        },
        _content_type=STRATEGIC,
    )
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers["web"].image == "nginx:1.28"
    assert [(e.name, e.value) for e in containers["web"].env] == [("A", "1"), ("B", "2")]
    assert containers["web"].ports[0].container_port == 80
    assert containers["sidecar"].image == "busybox:1.36"
    patched = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "sidecar", "$patch": "delete"}],
                        "$setElementOrder/containers": [{"name": "web"}],
                    }
                }
            }
        },
        _content_type=STRATEGIC,
    )
    assert [c.name for c in patched.spec.template.spec.containers] == ["web"]


def test_merge_patch_on_a_merge_list_replaces_it(api_client: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("lists"))
    patched = apps.patch_namespaced_deployment(
        "lists",
        namespace,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "only", "image": "busybox:1.36"}]}}
            }
        },
        _content_type=MERGE,
    )
    assert [c.name for c in patched.spec.template.spec.containers] == ["only"]


def test_json_patch_test_failure_is_rejected(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, config_map("guarded", k="v"))
    with pytest.raises(ApiException) as error:
        core.patch_namespaced_config_map(
            "guarded",
            namespace,
            [
                {"op": "test", "path": "/data/k", "value": "other"},
                {"op": "replace", "path": "/data/k", "value": "x"},
            ],
            _content_type=JSON_PATCH,
        )
    assert error.value.status == 422
    assert core.read_namespaced_config_map("guarded", namespace).data == {"k": "v"}


# -- server-side apply --------------------------------------------------------------------------


def applied_config_map(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_server_side_apply_creates_then_conflicts_then_forces(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    created = core.patch_namespaced_config_map(
        "ssa",
        namespace,
        applied_config_map("ssa", a="1", b="1"),
        field_manager="alice",
        _content_type=APPLY,
    )
    assert created.data == {"a": "1", "b": "1"}
    [entry] = created.metadata.managed_fields
    assert (entry.manager, entry.operation) == ("alice", "Apply")
    assert entry.fields_v1 == {"f:data": {"f:a": {}, "f:b": {}}}

    same_value = core.patch_namespaced_config_map(
        "ssa", namespace, applied_config_map("ssa", a="1"), field_manager="bob", _content_type=APPLY
    )
    assert {m.manager for m in same_value.metadata.managed_fields} == {"alice", "bob"}

    with pytest.raises(ApiException) as error:
        core.patch_namespaced_config_map(
            "ssa",
            namespace,
            applied_config_map("ssa", b="2"),
            field_manager="bob",
            _content_type=APPLY,
        )
    assert error.value.status == 409
    status = body_of(error.value)
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "alice" using v1: .data.b'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "alice" using v1',
            "field": ".data.b",
        }
    ]

    forced = core.patch_namespaced_config_map(
        "ssa",
        namespace,
        applied_config_map("ssa", a="1", b="2"),
        field_manager="bob",
        force=True,
        _content_type=APPLY,
    )
    assert forced.data == {"a": "1", "b": "2"}
    owners = {m.manager: m.fields_v1 for m in forced.metadata.managed_fields}
    assert owners["alice"] == {"f:data": {"f:a": {}}}
    assert owners["bob"] == {"f:data": {"f:a": {}, "f:b": {}}}


def test_server_side_apply_removes_fields_a_manager_stops_applying(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.patch_namespaced_config_map(
        "shrink",
        namespace,
        applied_config_map("shrink", keep="1", drop="1", shared="1"),
        field_manager="alice",
        _content_type=APPLY,
    )
    core.patch_namespaced_config_map(
        "shrink",
        namespace,
        applied_config_map("shrink", shared="1"),
        field_manager="bob",
        _content_type=APPLY,
    )
    shrunk = core.patch_namespaced_config_map(
        "shrink",
        namespace,
        applied_config_map("shrink", keep="1"),
        field_manager="alice",
        _content_type=APPLY,
    )
    assert shrunk.data == {"keep": "1", "shared": "1"}


def test_server_side_apply_merges_keyed_lists(api_client: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api_client)
    apps.patch_namespaced_deployment(
        "merged", namespace, deployment("merged"), field_manager="alice", _content_type=APPLY
    )
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "merged"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}
        },
    }
    merged = apps.patch_namespaced_deployment(
        "merged", namespace, sidecar, field_manager="bob", _content_type=APPLY
    )
    assert [c.name for c in merged.spec.template.spec.containers] == ["web", "sidecar"]
    fields = {m.manager: m.fields_v1 for m in merged.metadata.managed_fields}
    bob_containers = fields["bob"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert list(bob_containers) == ['k:{"name":"sidecar"}']
    assert bob_containers['k:{"name":"sidecar"}']["."] == {}


def test_server_side_apply_does_not_bump_anything_when_nothing_changes(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    first = core.patch_namespaced_config_map(
        "steady",
        namespace,
        applied_config_map("steady", a="1"),
        field_manager="alice",
        _content_type=APPLY,
    )
    again = core.patch_namespaced_config_map(
        "steady",
        namespace,
        applied_config_map("steady", a="1"),
        field_manager="alice",
        _content_type=APPLY,
    )
    assert again.metadata.resource_version == first.metadata.resource_version


def test_update_operations_are_recorded_in_managed_fields(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.patch_namespaced_config_map(
        "mixed",
        namespace,
        applied_config_map("mixed", a="1"),
        field_manager="alice",
        _content_type=APPLY,
    )
    updated = core.patch_namespaced_config_map(
        "mixed", namespace, {"data": {"a": "2"}}, field_manager="editor"
    )
    owners = {(m.manager, m.operation): m.fields_v1 for m in updated.metadata.managed_fields}
    assert owners == {("editor", "Update"): {"f:data": {"f:a": {}}}}
    with pytest.raises(ApiException) as error:
        core.patch_namespaced_config_map(
            "mixed",
            namespace,
            applied_config_map("mixed", a="3"),
            field_manager="alice",
            _content_type=APPLY,
        )
    assert 'conflict with "editor"' in body_of(error.value)["message"]


def test_apply_requires_a_field_manager(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    with pytest.raises(ApiException) as error:
        core.patch_namespaced_config_map(
            "nomgr", namespace, applied_config_map("nomgr"), _content_type=APPLY
        )
    assert error.value.status == 400


# -- metadata semantics -------------------------------------------------------------------------


def test_generation_moves_with_spec_and_status_is_a_separate_write(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(api_client)
    created = apps.create_namespaced_deployment(namespace, deployment("gen"))
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment(
        "gen", namespace, {"metadata": {"labels": {"x": "y"}}}
    )
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment(
        "gen", namespace, {"spec": {"replicas": 2}, "status": {"replicas": 9}}
    )
    assert scaled.metadata.generation == 2
    assert scaled.status.replicas is None
    status = apps.patch_namespaced_deployment_status(
        "gen",
        namespace,
        {"spec": {"replicas": 7}, "status": {"replicas": 2, "observedGeneration": 2}},
    )
    assert status.status.replicas == 2 and status.spec.replicas == 2
    assert status.metadata.generation == 2
    assert any(m.subresource == "status" for m in status.metadata.managed_fields)


def test_scale_subresource_reads_and_writes_replicas(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    apps = k8s.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("scaled", replicas=2))
    scale = apps.read_namespaced_deployment_scale("scaled", namespace)
    assert scale.spec.replicas == 2 and scale.status.selector == "app=scaled"
    apps.patch_namespaced_deployment_scale("scaled", namespace, {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment("scaled", namespace).spec.replicas == 5


def test_built_in_defaults_and_immutable_fields(api_client: k8s.ApiClient, namespace: str) -> None:
    apps = k8s.AppsV1Api(api_client)
    core = k8s.CoreV1Api(api_client)
    created = apps.create_namespaced_deployment(namespace, deployment("defaults"))
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.revision_history_limit == 10
    container = created.spec.template.spec.containers[0]
    assert container.image_pull_policy == "IfNotPresent"
    assert container.ports[0].protocol == "TCP"
    with pytest.raises(ApiException) as selector_error:
        apps.patch_namespaced_deployment(
            "defaults",
            namespace,
            {
                "spec": {
                    "selector": {"matchLabels": {"app": "other"}},
                    "template": {"metadata": {"labels": {"app": "other"}}},
                }
            },
        )
    assert selector_error.value.status == 422
    assert "field is immutable" in body_of(selector_error.value)["message"]
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": True}
    )
    with pytest.raises(ApiException) as frozen_error:
        core.patch_namespaced_config_map("frozen", namespace, {"data": {"a": "2"}})
    assert frozen_error.value.status == 422


def test_service_cluster_ip_comes_from_loopback_range_and_is_immutable(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    service = core.create_namespaced_service(
        namespace,
        {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
    )
    kubernetes_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    # this server's /24 block of 127.200.0.0/16 starts with the kubernetes Service
    assert kubernetes_ip.startswith("127.200.") and kubernetes_ip.endswith(".1")
    assert service.spec.cluster_ip.rsplit(".", 1)[0] == kubernetes_ip.rsplit(".", 1)[0]
    assert service.spec.cluster_ip != kubernetes_ip
    assert service.spec.ports[0].target_port == 80
    headless = core.create_namespaced_service(
        namespace,
        {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
    )
    assert headless.spec.cluster_ip == "None"
    with pytest.raises(ApiException) as error:
        core.patch_namespaced_service("svc", namespace, {"spec": {"clusterIP": "127.200.9.9"}})
    assert error.value.status == 422


def test_secret_string_data_is_stored_as_base64_data(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    secret = core.create_namespaced_secret(
        namespace, {"metadata": {"name": "token"}, "stringData": {"HF_TOKEN": "hf_abc"}}
    )
    assert secret.data == {"HF_TOKEN": "aGZfYWJj"} and secret.type == "Opaque"
    assert secret.string_data is None


def test_unknown_fields_warn_by_default_and_fail_when_strict(
    apiserver: RunningApiServer, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    loose = apiserver.request("POST", path, {"metadata": {"name": "loose"}, "bogus": 1})
    assert loose.status == 201
    assert loose.headers["Warning"] == '299 - "unknown field \\"bogus\\""'
    assert "bogus" not in loose.json()
    strict = apiserver.request(
        "POST", path + "?fieldValidation=Strict", {"metadata": {"name": "strict", "bogus": 1}}
    )
    assert strict.status == 400
    assert 'strict decoding error: unknown field "metadata.bogus"' in strict.json()["message"]


# -- deletion and garbage collection ------------------------------------------------------------


def owned_by(owner: Any, kind: str, block: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": block,
    }


def exists(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_background_deletion_collects_dependents(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, config_map("owner"))
    child = config_map("child")
    child["metadata"]["ownerReferences"] = [owned_by(owner, "ConfigMap")]
    core.create_namespaced_config_map(namespace, child)
    core.delete_namespaced_config_map("owner", namespace)
    wait_until(lambda: not exists(core.read_namespaced_config_map, "child", namespace))


def test_foreground_deletion_waits_for_blocking_dependents(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, config_map("fg-owner"))
    child = config_map("fg-child")
    child["metadata"]["ownerReferences"] = [owned_by(owner, "ConfigMap", block=True)]
    child["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map(namespace, child)
    core.delete_namespaced_config_map(
        "fg-owner", namespace, body={"propagationPolicy": "Foreground"}
    )
    held = core.read_namespaced_config_map("fg-owner", namespace)
    assert held.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in held.metadata.finalizers
    wait_until(
        lambda: (
            core.read_namespaced_config_map("fg-child", namespace).metadata.deletion_timestamp
            is not None
        )
    )
    assert exists(core.read_namespaced_config_map, "fg-owner", namespace)
    core.patch_namespaced_config_map(
        "fg-child", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    wait_until(lambda: not exists(core.read_namespaced_config_map, "fg-owner", namespace))
    assert not exists(core.read_namespaced_config_map, "fg-child", namespace)


def test_orphan_deletion_keeps_dependents_and_drops_their_owner_reference(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, config_map("or-owner"))
    child = config_map("or-child")
    child["metadata"]["ownerReferences"] = [owned_by(owner, "ConfigMap")]
    core.create_namespaced_config_map(namespace, child)
    core.delete_namespaced_config_map("or-owner", namespace, body={"propagationPolicy": "Orphan"})
    wait_until(lambda: not exists(core.read_namespaced_config_map, "or-owner", namespace))
    kept = core.read_namespaced_config_map("or-child", namespace)
    assert not kept.metadata.owner_references


def test_finalizers_hold_deletion_until_removed(api_client: k8s.ApiClient, namespace: str) -> None:
    core = k8s.CoreV1Api(api_client)
    held = config_map("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map(namespace, held)
    answer = core.delete_namespaced_config_map("held", namespace)
    assert answer is not None
    marked = core.read_namespaced_config_map("held", namespace)
    assert marked.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as error:
        core.patch_namespaced_config_map(
            "held",
            namespace,
            {"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}},
            _content_type=MERGE,
        )
    assert error.value.status == 422
    core.patch_namespaced_config_map(
        "held", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    assert not exists(core.read_namespaced_config_map, "held", namespace)


def test_namespace_deletion_terminates_then_removes_content(api_client: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api_client)
    name = f"gone-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    assert core.read_namespaced_service_account("default", name).metadata.name == "default"
    held = config_map("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map(name, held)
    core.create_namespaced_config_map(name, config_map("plain"))
    core.delete_namespace(name)
    assert core.read_namespace(name).status.phase == "Terminating"
    with pytest.raises(ApiException) as error:
        core.create_namespaced_config_map(name, config_map("late"))
    assert error.value.status == 403
    wait_until(lambda: not exists(core.read_namespaced_config_map, "plain", name))
    assert exists(core.read_namespace, name)
    core.patch_namespaced_config_map(
        "held", name, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    wait_until(lambda: not exists(core.read_namespace, name))


def test_delete_collection_removes_only_selected_objects(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    for name, tier in (("x1", "a"), ("x2", "a"), ("y1", "b")):
        core.create_namespaced_config_map(namespace, config_map(name, {"tier": tier}))
    core.delete_collection_namespaced_config_map(namespace, label_selector="tier=a")
    left = core.list_namespaced_config_map(namespace, label_selector="tier")
    assert [i.metadata.name for i in left.items] == ["y1"]


def test_unauthenticated_requests_are_401(apiserver: RunningApiServer) -> None:
    configuration = k8s.Configuration()
    configuration.host = apiserver.url
    configuration.ssl_ca_cert = str(apiserver.ca_path)
    anonymous = k8s.CoreV1Api(k8s.ApiClient(configuration))
    with pytest.raises(ApiException) as error:
        anonymous.list_namespace()
    assert error.value.status == 401


def test_requests_are_counted_by_client(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    def counted() -> dict[str, int]:
        by_agent: dict[str, int] = apiserver.admin("GET", "/state").json()["requestsByAgent"]
        return by_agent

    usual = api_client.user_agent
    api_client.user_agent = "counting-test/1.0"
    try:
        before = counted().get("counting-test", 0)
        core = k8s.CoreV1Api(api_client)
        for index in range(3):
            core.create_namespaced_config_map(namespace, config_map(f"counted-{index}"))
    finally:
        api_client.user_agent = usual
    assert counted()["counting-test"] == before + 3  # the admin reads themselves are not counted
