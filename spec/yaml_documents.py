"""YAML parsed by libyaml: the CRD bundles, chart files and values files the worker reads.

Where it sits: under manifests/crds.py (builtin CRD bundles), k8s/crds.py (CRD files and URLs)
and helmcli (Chart.yaml, values files), which parse on every dependencies step and helm step.
PyYAML's pure-Python loader took 65 ms for the builtin bundles, on the critical path of a cold
install's dependencies phase; its C loader (the same safe constructors, the same results)
takes 11 ms. Wheels of PyYAML ship it; a build without libyaml falls back to the Python loader.
"""

from __future__ import annotations

from typing import Any

import yaml

_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_document(text: str) -> Any:
    """The one YAML document in `text` (None for an empty text), safely constructed."""
    return yaml.load(text, Loader=_SAFE_LOADER)


def load_documents(text: str) -> list[Any]:
    """Every YAML document in `text`, safely constructed."""
    return list(yaml.load_all(text, Loader=_SAFE_LOADER))
