"""Helm's release records, read where helm keeps them instead of through `helm history`.

Where it sits: under activities/helm.py, which lists the records through the Kubernetes API and
hands them here. Helm v3 and v4 keep each revision of a release as one object in the release's
namespace: a Secret (the default driver) or a ConfigMap (`HELM_DRIVER=configmap`), labelled
`owner=helm,name=<release>`, whose `release` data is the revision as gzipped JSON in base64.
Reading them is one API request; `helm history` is a helm process of its own, about 60 ms of
CPU and wall time, and every release step read the history twice. Another driver (memory, sql)
has no such objects: the caller runs `helm history` then. Pure functions.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

StorageKind = Literal["Secret", "ConfigMap"]

# HELM_DRIVER values helm itself accepts for its Kubernetes drivers ("" is its default).
_KINDS: dict[str, StorageKind] = {
    "": "Secret",
    "secret": "Secret",
    "secrets": "Secret",
    "configmap": "ConfigMap",
    "configmaps": "ConfigMap",
}
_GZIP_MAGIC = b"\x1f\x8b\x08"


class UnreadableRecord(ValueError):
    """A storage object whose `release` data is not a helm release record."""


def storage_kind(driver: str) -> StorageKind | None:
    """The kind of object helm keeps releases in under HELM_DRIVER=`driver`; None for a driver
    that keeps none in the cluster's API."""
    return _KINDS.get(driver.strip().lower())


def record_selector(release: str) -> str:
    """The label selector of the release's records (the one helm's own drivers query by)."""
    return f"owner=helm,name={release}"


def history_entries(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records as `helm history -o json` lists them: revision, updated, status, chart,
    app_version, description."""
    return [_entry(_decoded(obj)) for obj in objects]


def _decoded(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    name = (obj.get("metadata") or {}).get("name", "?")
    text = (obj.get("data") or {}).get("release")
    if not isinstance(text, str):
        raise UnreadableRecord(f"{obj.get('kind', 'object')} {name} has no release data")
    try:
        data = base64.b64decode(text)
        if obj.get("kind") == "Secret":
            # A Secret's data is base64 once more, on top of helm's own.
            data = base64.b64decode(data)
        if data.startswith(_GZIP_MAGIC):
            data = gzip.decompress(data)
        record = json.loads(data)
    except (ValueError, OSError) as error:
        raise UnreadableRecord(f"{name}: not a helm release record: {error}") from None
    if not isinstance(record, dict):
        raise UnreadableRecord(f"{name}: not a helm release record")
    return record


def _entry(record: Mapping[str, Any]) -> dict[str, Any]:
    info = record.get("info") or {}
    metadata = (record.get("chart") or {}).get("metadata") or {}
    chart = f"{metadata['name']}-{metadata.get('version', '')}" if metadata.get("name") else ""
    return {
        "revision": int(record.get("version") or 0),
        "updated": str(info.get("last_deployed") or ""),
        "status": str(info.get("status") or ""),
        "chart": chart or "MISSING",
        "app_version": str(metadata.get("appVersion") or ""),
        "description": str(info.get("description") or ""),
    }
