"""Names, labels and the revision annotation every rendered model-service object carries.

Sits under every builder in this package: `object_meta` gives each object its name, namespace,
the modelservice chart's own labels plus our ownership labels, and the spec-revision annotation.
Pod templates never get the ownership labels or the annotation: a change there would restart
the pods of a role whose serving spec did not change.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from spec.rollout import ROLES, RoleName, RolloutSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "llmd-rollout"
ROLLOUT_LABEL = "llmd-rollout.llm-d.ai/rollout"
CLUSTER_LABEL = "llmd-rollout.llm-d.ai/cluster"
SPEC_REVISION_ANNOTATION = "llmd-rollout.llm-d.ai/spec-revision"

# The modelservice chart's labels: the InferencePool selects vLLM pods with the first two, the
# EPP tells prefill from decode pods with the third.
INFERENCE_SERVING = "llm-d.ai/inferenceServing"
MODEL = "llm-d.ai/model"
ROLE = "llm-d.ai/role"
EPP = "llm-d.ai/epp"
# What the upstream helmfile's postsync hook patched onto the HTTPRoute to make the gateway
# reconcile it; rendering it up front makes the nudge unnecessary.
INFERENCE_POOL = "inferencepool"

# Bump when the renderer's output changes for the same spec, so the revision follows the output.
RENDERER_REVISION = "1"


def ownership_labels(spec: RolloutSpec) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        ROLLOUT_LABEL: spec.metadata.name,
        CLUSTER_LABEL: spec.target.cluster,
    }


def serving_labels(spec: RolloutSpec) -> dict[str, str]:
    """The labels that make a pod part of the InferencePool."""
    return {INFERENCE_SERVING: "true", MODEL: spec.model_service.full_name}


def role_labels(spec: RolloutSpec, role: RoleName) -> dict[str, str]:
    return {**serving_labels(spec), ROLE: role}


def epp_name(spec: RolloutSpec) -> str:
    return f"{spec.model_service.full_name}-epp"


def object_meta(
    spec: RolloutSpec, name: str, chart_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """Metadata of a top-level object: the chart's labels first, then ours."""
    return {
        "name": name,
        "namespace": spec.target.namespace,
        "labels": {**(chart_labels or {}), **ownership_labels(spec)},
        "annotations": {SPEC_REVISION_ANNOTATION: spec_revision(spec)},
    }


def spec_revision(spec: RolloutSpec) -> str:
    """A short stable hash of every spec field the model-service objects are rendered from."""
    strategy = spec.strategy
    inputs = {
        "renderer": RENDERER_REVISION,
        "rollout": spec.metadata.name,
        "cluster": spec.target.cluster,
        "namespace": spec.target.namespace,
        "gateway": spec.infra.gateway,
        "modelLoad": spec.budgets.model_load.total_seconds(),
        "modelService": spec.model_service.model_dump(mode="json", by_alias=True),
        "rolloutStrategy": {
            role: strategy.for_role(role).model_dump(
                mode="json", by_alias=True, include={"max_unavailable", "max_surge"}
            )
            for role in ROLES
        },
    }
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
