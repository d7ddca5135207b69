"""Our own CRDs (manifests/crds/) are structural, serve what the stack renders, match upstream.

They are written from scratch, so they are checked against the upstream CRDs where it matters:
every status field a controller writes is declared, no spec field is accepted that the real API
lacks, and where both set a default it is the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from manifests import builtin_crds
from manifests.crds import BUNDLE_FILES, CrdBundleName
from tests.manifests.kube_schemas import CrdVersion, model_problems

Schemas = dict[tuple[str, str], CrdVersion]
BUNDLES: tuple[CrdBundleName, ...] = ("gateway-api", "inference-extension", "leaderworkerset")
EXPECTED_KINDS = {
    "gateway-api": [
        ("gateway.networking.k8s.io/v1", "GatewayClass"),
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ],
    "inference-extension": [
        ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"),
        ("inference.networking.x-k8s.io/v1alpha2", "InferenceModel"),
    ],
    "leaderworkerset": [("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")],
}
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def _served(crd: dict[str, Any]) -> list[tuple[str, str]]:
    spec = crd["spec"]
    return [
        (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
        for version in spec["versions"]
        if version["served"]
    ]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_each_bundle_serves_the_kinds_the_stack_uses(bundle: CrdBundleName) -> None:
    crds = builtin_crds(bundle)
    assert [kind for crd in crds for kind in _served(crd)] == EXPECTED_KINDS[bundle]
    assert len(crds) == len(BUNDLE_FILES[bundle])


def test_an_unknown_bundle_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown CRD bundle 'istio'"):
        builtin_crds("istio")  # type: ignore[arg-type]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_our_crds_are_faithful_custom_resource_definitions(bundle: CrdBundleName) -> None:
    for crd in builtin_crds(bundle):
        assert model_problems(crd, "V1CustomResourceDefinition") == [], crd["metadata"]["name"]


def _structural_problems(
    node: dict[str, Any], path: str, in_junctor: bool = False
) -> Iterator[str]:
    """The Kubernetes rules for a structural schema, as far as these CRDs can break them."""
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields") is True
    if not in_junctor and "type" not in node and not (int_or_string or keeps_unknown):
        yield f"{path}: no type"
    if in_junctor and set(node) & {"description", "default", "additionalProperties", "nullable"}:
        yield f"{path}: a junctor sets {sorted(node)}"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: both properties and additionalProperties"
    for name, child in node.get("properties", {}).items():
        yield from _structural_problems(child, f"{path}.{name}", in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _structural_problems(node["additionalProperties"], f"{path}.*", in_junctor)
    if isinstance(node.get("items"), dict):
        yield from _structural_problems(node["items"], f"{path}[]", in_junctor)
    for junctor in _JUNCTORS:
        for index, child in enumerate(node.get(junctor, [])):
            if not int_or_string:
                yield f"{path}.{junctor}: only the int-or-string pattern is expected here"
            yield from _structural_problems(child, f"{path}.{junctor}[{index}]", True)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_our_schemas_are_structural(bundle: CrdBundleName) -> None:
    for crd in builtin_crds(bundle):
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            assert list(_structural_problems(schema, crd["metadata"]["name"])) == []
            # Only name and generateName may be restricted in metadata: we restrict nothing.
            assert schema["properties"]["metadata"] == {"type": "object"}


def test_every_kind_has_a_status_subresource_and_lws_a_scale_subresource() -> None:
    for bundle in BUNDLES:
        for crd in builtin_crds(bundle):
            for version in crd["spec"]["versions"]:
                assert version["subresources"]["status"] == {}
    (lws,) = builtin_crds("leaderworkerset")
    version = lws["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.hpaPodSelector",
    }
    columns = [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Ready", ".status.readyReplicas"),
        ("Desired", ".spec.replicas"),
        ("Up-to-date", ".status.updatedReplicas"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def _paths(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return
    for name, child in node.get("properties", {}).items():
        yield from _paths(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _paths(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        yield from _paths(node["items"], f"{path}[]")


def _both(real: Schemas, ours: Schemas) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for key, our_version in ours.items():
        yield f"{key[1]}", real[key].schema, our_version.schema


@pytest.mark.reference
def test_our_status_schemas_declare_every_status_field_upstream_declares(
    real_crd_schemas: Schemas, our_crd_schemas: Schemas
) -> None:
    for kind, real, ours in _both(real_crd_schemas, our_crd_schemas):
        our_paths = dict(_paths(ours["properties"]["status"], "status"))
        for path, _ in _paths(real["properties"]["status"], "status"):
            assert path in our_paths, f"{kind}: {path} would be pruned from status"


@pytest.mark.reference
def test_our_spec_schemas_accept_no_field_upstream_lacks(
    real_crd_schemas: Schemas, our_crd_schemas: Schemas
) -> None:
    for kind, real, ours in _both(real_crd_schemas, our_crd_schemas):
        real_paths = dict(_paths(real["properties"]["spec"], "spec"))
        for path, _ in _paths(ours["properties"]["spec"], "spec"):
            assert path in real_paths, f"{kind}: {path} is not in the upstream API"


@pytest.mark.reference
def test_defaults_set_by_both_schemas_agree(
    real_crd_schemas: Schemas, our_crd_schemas: Schemas
) -> None:
    compared = 0
    for kind, real, ours in _both(real_crd_schemas, our_crd_schemas):
        real_paths = dict(_paths(real, kind))
        for path, node in _paths(ours, kind):
            if "default" in node and "default" in real_paths.get(path, {}):
                assert node["default"] == real_paths[path]["default"], path
                compared += 1
    assert compared >= 20


@pytest.mark.parametrize("bundle", BUNDLES)
def test_each_builtin_file_defines_the_crd_the_bundle_names(bundle: CrdBundleName) -> None:
    """spec/crds.py is the one list of CRD names: the dependencies phase expects them
    Established, preflight checks them and teardown deletes them, so the builtin files must
    define exactly those."""
    from spec.crds import BUNDLE_CRDS

    names = [crd["metadata"]["name"] for crd in builtin_crds(bundle)]
    assert names == list(BUNDLE_CRDS[bundle])
