"""The model-service objects a rollout applies, rendered from its spec, and the project's own CRDs.

The orchestrator owns these objects itself instead of installing llm-d's modelservice chart, so
it can roll prefill and decode separately, canary a partition, snapshot what it applied and put
it back. Where it sits: the bottom layer with spec/ (docs/architecture.md, "Layers"). See
manifests/README.md for what is rendered and how it differs from the chart.
"""

from manifests.crds import CrdBundleName, builtin_crds
from manifests.documents import object_key, to_yaml
from manifests.labels import epp_name, role_labels, spec_revision
from manifests.lws import vllm_port
from manifests.render import render_model_service, render_role, render_shared

__all__ = [
    "CrdBundleName",
    "builtin_crds",
    "epp_name",
    "object_key",
    "render_model_service",
    "render_role",
    "render_shared",
    "role_labels",
    "spec_revision",
    "to_yaml",
    "vllm_port",
]
