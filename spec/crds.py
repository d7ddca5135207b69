"""The CustomResourceDefinitions the stack depends on, by bundle: the one place their names live.

Where it sits: the dependencies phase installs or checks each bundle (workflows/rollout.py names
the CRDs it expects established), preflight checks the bundles a spec says are already installed
(activities/preflight.py), teardown deletes them when asked (workflows/teardown.py), and the
builtin bundle files are named after them (manifests/crds.py). Pure data, importable from
workflow code.
"""

from __future__ import annotations

from typing import Literal

CRD_API_VERSION = "apiextensions.k8s.io/v1"
CRD_KIND = "CustomResourceDefinition"

CrdBundleName = Literal["gateway-api", "inference-extension", "leaderworkerset"]

# Install order within each bundle.
BUNDLE_CRDS: dict[CrdBundleName, tuple[str, ...]] = {
    "gateway-api": (
        "gatewayclasses.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
    ),
    "inference-extension": (
        "inferencepools.inference.networking.x-k8s.io",
        "inferencemodels.inference.networking.x-k8s.io",
    ),
    "leaderworkerset": ("leaderworkersets.leaderworkerset.x-k8s.io",),
}
GATEWAY_API_CRDS = BUNDLE_CRDS["gateway-api"]
INFERENCE_EXTENSION_CRDS = BUNDLE_CRDS["inference-extension"]
LWS_CRDS = BUNDLE_CRDS["leaderworkerset"]


def crd_file_name(crd: str) -> str:
    """`gateways.gateway.networking.k8s.io` -> `gateway.networking.k8s.io_gateways.yaml`, the
    upstream file naming the builtin bundles (manifests/crds/) follow."""
    plural, group = crd.split(".", 1)
    return f"{group}_{plural}.yaml"
