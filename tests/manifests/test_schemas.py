"""Every rendered object is a valid instance of its kind, and keeps every field we wrote.

Custom kinds are checked against the upstream CRDs the July 2025 stack installed and against our
own (manifests/crds/); built-in kinds, and the LWS pod templates, against the `kubernetes`
client's models. CEL rules (x-kubernetes-validations) are not evaluated here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from manifests import object_key, render_model_service, render_role
from spec import ROLES
from tests.manifests.conftest import EXAMPLE_NAMES, example
from tests.manifests.kube_schemas import (
    BUILTIN_MODELS,
    CrdVersion,
    crd_problems,
    model_problems,
)

Schemas = dict[tuple[str, str], CrdVersion]


def _rendered(name: str) -> list[dict[str, Any]]:
    spec = example(name)
    # A canary step's LWS too: its rolloutStrategy must be as valid as the rest.
    return render_model_service(spec) + [render_role(spec, role, partition=0) for role in ROLES]


def _custom(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if (obj["apiVersion"], obj["kind"]) not in BUILTIN_MODELS]


@pytest.mark.reference
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_custom_objects_validate_against_the_upstream_crds(
    name: str, real_crd_schemas: Schemas
) -> None:
    for obj in _custom(_rendered(name)):
        crd = real_crd_schemas[(obj["apiVersion"], obj["kind"])]
        assert crd_problems(obj, crd.schema) == [], object_key(obj)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_custom_objects_validate_against_our_crds(name: str, our_crd_schemas: Schemas) -> None:
    for obj in _custom(_rendered(name)):
        crd = our_crd_schemas[(obj["apiVersion"], obj["kind"])]
        assert crd_problems(obj, crd.schema) == [], object_key(obj)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_builtin_objects_are_faithful_kubernetes_models(name: str) -> None:
    objects = _rendered(name)
    checked = set()
    for obj in objects:
        model = BUILTIN_MODELS.get((obj["apiVersion"], obj["kind"]))
        if model is not None:
            assert model_problems(obj, model) == [], object_key(obj)
            checked.add(obj["kind"])
    assert checked == {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "Role",
        "RoleBinding",
    }


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_leader_worker_set_pod_templates_are_faithful_pod_templates(name: str) -> None:
    for obj in _rendered(name):
        if obj["kind"] == "LeaderWorkerSet":
            template = obj["spec"]["leaderWorkerTemplate"]["workerTemplate"]
            assert model_problems(template, "V1PodTemplateSpec") == [], object_key(obj)


@pytest.mark.reference
def test_the_reference_render_validates_against_our_crds(
    reference: Path, our_crd_schemas: Schemas
) -> None:
    text = (reference / "rendered" / "ms-wide-ep.rendered.yaml").read_text(encoding="utf-8")
    objects = [document for document in yaml.safe_load_all(text) if document]
    for obj in _custom(objects):
        crd = our_crd_schemas[(obj["apiVersion"], obj["kind"])]
        assert crd_problems(obj, crd.schema) == [], obj["metadata"]["name"]


def test_schema_check_reports_pruned_and_mistyped_fields(our_crd_schemas: Schemas) -> None:
    spec = example("wide-ep-lws.yaml")
    route = render_model_service(spec)[9]
    assert route["kind"] == "HTTPRoute"
    route["spec"]["rules"][0]["retries"] = {"attempts": 2}
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = "8000"
    schema = our_crd_schemas[("gateway.networking.k8s.io/v1", "HTTPRoute")].schema
    problems = crd_problems(route, schema)
    assert any("retries: pruned" in problem for problem in problems)
    assert any("port" in problem and "not of type 'integer'" in problem for problem in problems)


def test_model_check_reports_dropped_and_mistyped_fields() -> None:
    deployment = render_model_service(example("wide-ep-lws.yaml"))[3]
    assert deployment["kind"] == "Deployment"
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = []
    assert any("readinessProbes: dropped" in p for p in model_problems(deployment, "V1Deployment"))
    deployment["spec"]["replicas"] = "1"
    assert any("replicas" in p for p in model_problems(deployment, "V1Deployment"))
