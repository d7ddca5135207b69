"""The project's own CRDs (manifests/crds/*.yaml): what a `builtin` CRD bundle in a spec installs.

The dependencies phase applies these when a spec says `source: builtin` (the demo does), so the
stack runs without reaching the upstream repositories. Each is our own structural schema of the
kinds the wide-EP stack uses, at the API version the stack renders.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Literal

import yaml

CrdBundleName = Literal["gateway-api", "inference-extension", "leaderworkerset"]

BUNDLE_FILES: dict[CrdBundleName, tuple[str, ...]] = {
    "gateway-api": (
        "gateway.networking.k8s.io_gatewayclasses.yaml",
        "gateway.networking.k8s.io_gateways.yaml",
        "gateway.networking.k8s.io_httproutes.yaml",
    ),
    "inference-extension": (
        "inference.networking.x-k8s.io_inferencepools.yaml",
        "inference.networking.x-k8s.io_inferencemodels.yaml",
    ),
    "leaderworkerset": ("leaderworkerset.x-k8s.io_leaderworkersets.yaml",),
}


def crd_text(file_name: str) -> str:
    """The bytes of one CRD file as text, e.g. for a chart that must ship it unchanged."""
    return (resources.files("manifests") / "crds" / file_name).read_text(encoding="utf-8")


def builtin_crds(bundle: CrdBundleName) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of one bundle, in install order."""
    try:
        files = BUNDLE_FILES[bundle]
    except KeyError:
        known = ", ".join(BUNDLE_FILES)
        raise ValueError(f"unknown CRD bundle {bundle!r}; builtin bundles are {known}") from None
    crds: list[dict[str, Any]] = []
    for file_name in files:
        document = yaml.safe_load(crd_text(file_name))
        if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
            raise ValueError(f"manifests/crds/{file_name} is not a CustomResourceDefinition")
        crds.append(document)
    return crds
