"""The as-shipped example renders what llm-d-modelservice v0.2.0 rendered for wide-EP in July 2025.

Compared with rendered/ms-wide-ep.rendered.yaml after removing Helm's bookkeeping labels and our
ownership labels and annotation. Every other difference is listed below with its reason; each
entry must still be needed, so the list cannot go stale.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from manifests import object_key, render_model_service
from manifests.labels import (
    CLUSTER_LABEL,
    INFERENCE_POOL,
    MANAGED_BY,
    ROLLOUT_LABEL,
    SPEC_REVISION_ANNOTATION,
)
from tests.manifests.conftest import example

Obj = dict[str, Any]
HELM_BOOKKEEPING = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
OURS = (MANAGED_BY, ROLLOUT_LABEL, CLUSTER_LABEL)
NAMESPACE = "llm-d-wide-ep"
PLUGINS_CONFIG = "pd-config.yaml"


@dataclass(frozen=True)
class IntendedDifference:
    what: str
    why: str
    # Applied to a copy of the reference object: what the chart would render with the change.
    apply: Callable[[Obj], None]


def _set_namespace(obj: Obj) -> None:
    obj["metadata"].setdefault("namespace", NAMESPACE)


def _quantities_as_strings(obj: Obj) -> None:
    if obj["kind"] != "LeaderWorkerSet":
        return
    pod = obj["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    for container in pod["containers"]:
        for amounts in container.get("resources", {}).values():
            for name, amount in amounts.items():
                amounts[name] = str(amount)


def _only_the_started_plugins_config(obj: Obj) -> None:
    if obj["kind"] == "ConfigMap":
        obj["data"] = {PLUGINS_CONFIG: obj["data"][PLUGINS_CONFIG]}


def _route_labelled_with_its_pool(obj: Obj) -> None:
    if obj["kind"] == "HTTPRoute":
        obj["metadata"].setdefault("labels", {})[INFERENCE_POOL] = "ms-wide-ep"


INTENDED_DIFFERENCES = (
    IntendedDifference(
        "every object names its namespace (the chart leaves it out of 7 of 12)",
        "we apply through the API, not `helm install -n`: without it an object would land in "
        "the client's default namespace",
        _set_namespace,
    ),
    IntendedDifference(
        "resource quantities are strings (`cpu: '32'`, `rdma/ib: '1'`, not integers)",
        "a quantity's type is string in the Kubernetes API (ResourceList); the API server reads "
        "32 and '32' as the same quantity, so the pods are identical",
        _quantities_as_strings,
    ),
    IntendedDifference(
        "the EPP ConfigMap holds only the plugins config the EPP is started with",
        "the chart's four built-in configs (default-config.yaml, default-pd-config.yaml, "
        "prefix-cache-tracking-config.yaml, prefix-estimate-config.yaml) are never selected by "
        "`-configFile`; the modelservice chart had no licence at v0.2.0, so we do not copy them",
        _only_the_started_plugins_config,
    ),
    IntendedDifference(
        "the HTTPRoute carries the label `inferencepool: ms-wide-ep`",
        "the upstream helmfile's postsync hook patched this label on after install to make the "
        "gateway reconcile the route; rendering it up front makes that nudge unnecessary",
        _route_labelled_with_its_pool,
    ),
)


def _without_bookkeeping(obj: Obj) -> Obj:
    result = copy.deepcopy(obj)
    metadata = result["metadata"]
    labels = {
        key: value
        for key, value in metadata.get("labels", {}).items()
        if key not in HELM_BOOKKEEPING and key not in OURS
    }
    annotations = {
        key: value
        for key, value in metadata.get("annotations", {}).items()
        if key != SPEC_REVISION_ANNOTATION
    }
    metadata.pop("labels", None)
    metadata.pop("annotations", None)
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return result


def _reference_objects(reference: Path) -> list[Obj]:
    text = (reference / "rendered" / "ms-wide-ep.rendered.yaml").read_text(encoding="utf-8")
    return [document for document in yaml.safe_load_all(text) if document]


def _with_intended_differences(reference_obj: Obj) -> Obj:
    result = _without_bookkeeping(reference_obj)
    for difference in INTENDED_DIFFERENCES:
        difference.apply(result)
    return result


def _by_key(objects: list[Obj]) -> dict[str, Obj]:
    keyed = {}
    for obj in objects:
        copied = copy.deepcopy(obj)
        _set_namespace(copied)
        keyed[object_key(copied)] = obj
    return keyed


@pytest.mark.reference
def test_as_shipped_example_renders_the_reference_objects(reference: Path) -> None:
    ours = _by_key(render_model_service(example("wide-ep-lws-as-shipped.yaml")))
    theirs = _by_key(_reference_objects(reference))
    assert sorted(ours) == sorted(theirs)
    for key, obj in theirs.items():
        assert _without_bookkeeping(ours[key]) == _with_intended_differences(obj), key


@pytest.mark.reference
def test_each_intended_difference_is_still_needed(reference: Path) -> None:
    ours = _by_key(render_model_service(example("wide-ep-lws-as-shipped.yaml")))
    theirs = _by_key(_reference_objects(reference))
    for difference in INTENDED_DIFFERENCES:
        others = [d for d in INTENDED_DIFFERENCES if d is not difference]
        mismatched = []
        for key, obj in theirs.items():
            expected = _without_bookkeeping(obj)
            for other in others:
                other.apply(expected)
            if expected != _without_bookkeeping(ours[key]):
                mismatched.append(key)
        assert mismatched, f"no longer a difference: {difference.what}"


@pytest.mark.reference
def test_vllm_script_is_the_charts_byte_for_byte(reference: Path) -> None:
    ours = _by_key(render_model_service(example("wide-ep-lws-as-shipped.yaml")))
    for key, obj in _by_key(_reference_objects(reference)).items():
        if obj["kind"] != "LeaderWorkerSet":
            continue
        ref_pod = obj["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
        our_pod = ours[key]["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
        assert our_pod["containers"][0]["args"] == ref_pod["containers"][0]["args"]
        assert our_pod["containers"][0]["command"] == ["/bin/bash", "-c"]


def test_apply_order_is_identities_epp_routing_then_prefill_and_decode() -> None:
    kinds = [obj["kind"] for obj in render_model_service(example("wide-ep-lws-as-shipped.yaml"))]
    assert kinds == [
        "ServiceAccount",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "Role",
        "RoleBinding",
        "InferencePool",
        "InferenceModel",
        "HTTPRoute",
        "LeaderWorkerSet",
        "LeaderWorkerSet",
    ]
    roles = [
        obj["metadata"]["labels"]["llm-d.ai/role"]
        for obj in render_model_service(example("wide-ep-lws-as-shipped.yaml"))
        if obj["kind"] == "LeaderWorkerSet"
    ]
    assert roles == ["prefill", "decode"]
