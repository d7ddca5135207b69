"""Fixtures of the manifest tests: the example specs and the schemas to check objects against."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.crds import BUNDLE_FILES
from spec import RolloutSpec, load_spec
from tests.manifests.kube_schemas import CrdVersion, load_crds, served_schemas
from tests.reference import reference_dir

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXAMPLE_NAMES = ("wide-ep-lws-as-shipped.yaml", "wide-ep-lws.yaml", "demo.yaml")
OUR_CRDS = REPO / "manifests" / "crds"


def example(name: str) -> RolloutSpec:
    return load_spec(EXAMPLES / name)


@pytest.fixture(scope="session")
def reference() -> Path:
    return reference_dir()


@pytest.fixture(scope="session")
def real_crd_schemas(reference: Path) -> dict[tuple[str, str], CrdVersion]:
    """The upstream CRDs the July 2025 stack installed (LWS, Gateway API, inference extension)."""
    return served_schemas(load_crds(sorted((reference / "crds").rglob("*.yaml"))))


@pytest.fixture(scope="session")
def our_crd_schemas() -> dict[tuple[str, str], CrdVersion]:
    files = [OUR_CRDS / name for names in BUNDLE_FILES.values() for name in names]
    return served_schemas(load_crds(files))
