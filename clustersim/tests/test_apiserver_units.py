"""Pure parts of the API server: patch directives, selectors, field sets, schemas, JSONPath."""

from __future__ import annotations

from typing import Any

import pytest

from clustersim.apiserver.errors import ApiError
from clustersim.apiserver.fieldsets import applied_fields, from_fields_v1, to_fields_v1
from clustersim.apiserver.jsonpath import evaluate
from clustersim.apiserver.lws_webhook import max_name_length
from clustersim.apiserver.patch import json_patch, merge_patch, strategic_merge_patch
from clustersim.apiserver.selectors import matches_labels, parse_label_selector
from clustersim.apiserver.shapes import builtin_shape
from clustersim.apiserver.storage import Storage
from clustersim.apiserver.structural import apply_defaults, prune, validate

POD = builtin_shape("Pod")


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_strategic_merge_patch_directives() -> None:
    original = pod(
        containers=[{"name": "a", "image": "x", "args": ["1", "2"]}, {"name": "b", "image": "y"}],
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    patched = strategic_merge_patch(
        original,
        {
            "spec": {
                "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "z"}],
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "volumes": [
                    {"name": "v", "hostPath": {"path": "/d"}, "$retainKeys": ["name", "hostPath"]}
                ],
            }
        },
        POD,
    )
    assert [c["name"] for c in patched["spec"]["containers"]] == ["c", "a"]
    assert patched["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/d"}}]
    replaced = strategic_merge_patch(
        original,
        {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "i"}]}},
        POD,
    )
    assert replaced["spec"]["containers"] == [{"name": "only", "image": "i"}]
    finalizers = {"metadata": {"name": "p", "finalizers": ["a", "b"]}}
    trimmed = strategic_merge_patch(
        finalizers, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, POD
    )
    assert trimmed["metadata"]["finalizers"] == ["b"]


def test_json_patch_and_merge_patch() -> None:
    document = {"a": {"b": [1, 2]}}
    assert json_patch(
        document,
        [{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "move", "from": "/a/b", "path": "/c"}],
    ) == {"a": {}, "c": [1, 2, 3]}
    with pytest.raises(ApiError):
        json_patch(document, [{"op": "remove", "path": "/missing"}])
    assert merge_patch({"a": 1, "b": {"c": 2}}, {"a": None, "b": {"d": 3}}) == {
        "b": {"c": 2, "d": 3}
    }


def test_label_selector_grammar() -> None:
    selector = parse_label_selector("app in (web, api),tier!=db,!legacy,version")
    assert matches_labels(selector, {"metadata": {"labels": {"app": "web", "version": "2"}}})
    assert not matches_labels(selector, {"metadata": {"labels": {"app": "web"}}})
    with pytest.raises(ApiError) as error:
        parse_label_selector("bad key=x")
    assert error.value.code == 400


def test_field_sets_round_trip_through_fields_v1() -> None:
    applied = pod(containers=[{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}])
    fields = applied_fields(applied, POD)
    tree = to_fields_v1(fields)
    assert tree == {
        "f:spec": {
            "f:containers": {
                'k:{"name":"a"}': {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {
                        'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}
                    },
                }
            }
        }
    }
    assert from_fields_v1(tree) == fields


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1},
                "mode": {"type": "string", "default": "a", "enum": ["a", "b"]},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}


def test_structural_schema_prunes_defaults_and_validates() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "n", "junk": 1},
        "spec": {"size": "2", "other": 1, "free": {"any": {"thing": 1}}},
    }
    assert sorted(prune(obj, SCHEMA)) == ["metadata.junk", "spec.other"]
    apply_defaults(obj, SCHEMA)
    assert obj["spec"]["mode"] == "a" and obj["spec"]["free"] == {"any": {"thing": 1}}
    [error] = validate(obj, SCHEMA)
    assert error.field == "spec.size"
    assert error.message == (
        'Invalid value: "string": spec.size in body must be of type integer: "string"'
    )


def test_jsonpath_filters_for_printer_columns() -> None:
    gateway = {
        "status": {
            "conditions": [
                {"type": "Accepted", "status": "True"},
                {"type": "Programmed", "status": "False"},
            ]
        }
    }
    assert evaluate(gateway, '.status.conditions[?(@.type=="Programmed")].status') == ["False"]
    assert evaluate(gateway, ".status.conditions[*].type") == ["Accepted", "Programmed"]


def test_lws_name_limit_leaves_room_for_the_revision_hash_label() -> None:
    assert max_name_length(1) == 50
    assert max_name_length(11) == 49


def test_storage_put_of_a_shallow_copy_leaves_the_previous_version_and_its_event_alone() -> None:
    storage = Storage()
    first = storage.put(("", "configmaps"), {"metadata": {"name": "c", "namespace": "n"}})
    watcher, _ = storage.subscribe(("", "configmaps"), None, None)
    second = dict(first)  # shares `metadata` with the stored version, as controllers build it
    second["data"] = {"k": "v"}
    stored = storage.put(("", "configmaps"), second)
    assert first["metadata"]["resourceVersion"] == "1"
    assert stored["metadata"]["resourceVersion"] == "2"
    event = watcher.queue.get_nowait()
    assert event is not None and event.type == "MODIFIED" and event.resource_version == 2
    assert event.obj["metadata"]["resourceVersion"] == "2"
    assert event.previous is not None and event.previous["metadata"]["resourceVersion"] == "1"
