"""Rendering is pure, and a change reaches only the objects it should.

The rollout skips a role whose LeaderWorkerSet did not change and snapshots what it applied as
YAML, so: the same spec gives the same bytes; a new decode image changes the decode LWS and
nothing else but the revision annotation; pod templates never carry our bookkeeping.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from manifests import (
    object_key,
    render_model_service,
    render_role,
    render_shared,
    spec_revision,
    to_yaml,
)
from manifests.labels import CLUSTER_LABEL, MANAGED_BY, ROLLOUT_LABEL, SPEC_REVISION_ANNOTATION
from spec import ROLES, RolloutSpec
from spec.loader import validate_document
from tests.manifests.conftest import EXAMPLE_NAMES, example

NEW_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.1"


def _changed(spec: RolloutSpec, *path: str, value: Any) -> RolloutSpec:
    document = spec.model_dump(mode="json", by_alias=True)
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return validate_document(document)


def _without_revision(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    stripped = {}
    for obj in objects:
        copied = copy.deepcopy(obj)
        del copied["metadata"]["annotations"][SPEC_REVISION_ANNOTATION]
        stripped[object_key(copied)] = copied
    return stripped


def _changed_keys(before: RolloutSpec, after: RolloutSpec) -> list[str]:
    old = _without_revision(render_model_service(before))
    new = _without_revision(render_model_service(after))
    assert old.keys() == new.keys()
    return sorted(key for key in old if old[key] != new[key])


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Deployment":
        return [obj["spec"]["template"]]
    if obj["kind"] == "LeaderWorkerSet":
        return [obj["spec"]["leaderWorkerTemplate"]["workerTemplate"]]
    return []


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_rendering_twice_gives_identical_bytes(name: str) -> None:
    first = to_yaml(render_model_service(example(name)))
    second = to_yaml(render_model_service(example(name)))
    assert first == second
    assert first.encode("utf-8") == second.encode("utf-8")


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_yaml_reads_back_as_the_rendered_objects(name: str) -> None:
    objects = render_model_service(example(name))
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects


def test_model_service_is_the_shared_objects_then_prefill_then_decode() -> None:
    spec = example("wide-ep-lws.yaml")
    assert render_model_service(spec) == [
        *render_shared(spec),
        render_role(spec, "prefill"),
        render_role(spec, "decode"),
    ]


def test_a_new_decode_image_changes_only_the_decode_lws() -> None:
    spec = example("wide-ep-lws.yaml")
    changed = _changed(spec, "modelService", "decode", "image", value=NEW_IMAGE)
    assert _changed_keys(spec, changed) == [
        "leaderworkerset.x-k8s.io/LeaderWorkerSet/llm-d-wide-ep/ms-wide-ep-llm-d-modelservice-decode"
    ]
    assert spec_revision(changed) != spec_revision(spec)


def test_a_new_prefill_image_changes_only_the_prefill_lws() -> None:
    spec = example("wide-ep-lws.yaml")
    changed = _changed(spec, "modelService", "prefill", "image", value=NEW_IMAGE)
    assert _changed_keys(spec, changed) == [
        "leaderworkerset.x-k8s.io/LeaderWorkerSet/llm-d-wide-ep/ms-wide-ep-llm-d-modelservice-prefill"
    ]


def test_a_new_epp_image_changes_only_the_epp_deployment() -> None:
    spec = example("wide-ep-lws.yaml")
    changed = _changed(spec, "modelService", "epp", "image", value="ghcr.io/llm-d/epp:v0.3.0")
    assert _changed_keys(spec, changed) == [
        "apps/Deployment/llm-d-wide-ep/ms-wide-ep-llm-d-modelservice-epp"
    ]


def test_the_revision_changes_with_a_rendered_input_and_only_then() -> None:
    spec = example("wide-ep-lws.yaml")
    assert spec_revision(spec) == spec_revision(example("wide-ep-lws.yaml"))
    unrelated = _changed(spec, "verification", "prompt", value="Hello")
    assert spec_revision(unrelated) == spec_revision(spec)
    assert to_yaml(render_model_service(unrelated)) == to_yaml(render_model_service(spec))
    longer_load = _changed(spec, "budgets", "modelLoad", value="40m")
    assert spec_revision(longer_load) != spec_revision(spec)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_object_carries_ownership_labels_and_the_revision(name: str) -> None:
    spec = example(name)
    for obj in render_model_service(spec):
        metadata = obj["metadata"]
        assert metadata["namespace"] == spec.target.namespace
        assert metadata["labels"][MANAGED_BY] == "llmd-rollout"
        assert metadata["labels"][ROLLOUT_LABEL] == spec.metadata.name
        assert metadata["labels"][CLUSTER_LABEL] == spec.target.cluster
        assert metadata["annotations"] == {SPEC_REVISION_ANNOTATION: spec_revision(spec)}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_pod_templates_keep_exactly_the_charts_labels(name: str) -> None:
    spec = example(name)
    expected = {
        "Deployment": {"llm-d.ai/epp": "ms-wide-ep-llm-d-modelservice-epp"},
        "prefill": {
            "llm-d.ai/inferenceServing": "true",
            "llm-d.ai/model": "ms-wide-ep-llm-d-modelservice",
            "llm-d.ai/role": "prefill",
        },
    }
    expected["decode"] = {**expected["prefill"], "llm-d.ai/role": "decode"}
    seen = 0
    for obj in render_model_service(spec):
        for template in _pod_templates(obj):
            which = obj["metadata"]["labels"].get("llm-d.ai/role", obj["kind"])
            assert template["metadata"] == {"labels": expected[which]}
            seen += 1
    assert seen == 1 + len(ROLES)
