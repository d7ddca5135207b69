"""The project's own CRDs (manifests/crds/*.yaml): what a `builtin` CRD bundle in a spec installs.

The dependencies phase applies these when a spec says `source: builtin` (the demo does), so the
stack runs without reaching the upstream repositories. Each is our own structural schema of the
kinds the wide-EP stack uses, at the API version the stack renders.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from spec.crds import BUNDLE_CRDS, crd_file_name
from spec.crds import CrdBundleName as CrdBundleName  # re-exported: manifests names bundles
from spec.yaml_documents import load_document

# The builtin bundle files carry the upstream names of the CRDs they define.
BUNDLE_FILES: dict[CrdBundleName, tuple[str, ...]] = {
    bundle: tuple(crd_file_name(crd) for crd in crds) for bundle, crds in BUNDLE_CRDS.items()
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
        document = load_document(crd_text(file_name))
        if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
            raise ValueError(f"manifests/crds/{file_name} is not a CustomResourceDefinition")
        crds.append(document)
    return crds
