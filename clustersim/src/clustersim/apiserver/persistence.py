"""The optional JSON state file: every object and the resourceVersion counter."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clustersim.apiserver.storage import Storage

FORMAT = "clustersim-state/v1"
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


def save(storage: Storage, path: Path) -> None:
    resources = []
    for key in storage.storage_keys():
        objects = storage.list_objects(key)
        if objects:
            resources.append({"group": key[0], "resource": key[1], "objects": objects})
    state = {"format": FORMAT, "resourceVersion": storage.resource_version,
             "resources": resources}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, separators=(",", ":")))
    os.replace(temporary, path)


def load(path: Path) -> tuple[int, list[tuple[tuple[str, str], list[dict[str, Any]]]]]:
    """(resourceVersion, objects per storage key), CRDs first so their kinds can be served."""
    state = json.loads(path.read_text())
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a clustersim state file")
    resources = [((str(r["group"]), str(r["resource"])), list(r["objects"]))
                 for r in state.get("resources", [])]
    resources.sort(key=lambda item: item[0] != CRD_KEY)
    return int(state.get("resourceVersion", 0)), resources
