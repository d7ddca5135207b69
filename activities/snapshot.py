"""Snapshots of the objects a rollout owns, as a ConfigMap of ours in the target namespace.

Where it sits: pure encoding used by the snapshot, last-known-good and restore activities in
activities/kube.py. A snapshot keeps each live object as it could be applied again: the fields
the API server owns (status, uid, resourceVersion, managedFields, allocated cluster IPs ...) are
dropped. The objects go gzip-compressed in `binaryData` (a ConfigMap holds at most 1 MiB), with a
digest so re-taking an unchanged snapshot is a no-op, and a readable list of what is inside.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from spec.activity_io import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SNAPSHOT_OF_LABEL, ObjectRef

SNAPSHOT_PREFIX = "llmd-rollout-snapshot"
LAST_KNOWN_GOOD_PREFIX = "llmd-rollout-last-known-good"
OBJECTS_KEY = "objects.json.gz"
DIGEST_ANNOTATION = "llmd-rollout.llm-d.ai/snapshot-digest"
REVISION_KEY = "revision"
# Leave room under the API server's 1 MiB object limit for metadata.
MAX_SNAPSHOT_BYTES = 900 * 1024

_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)
_SERVER_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
)
# Allocated by the API server; re-applying them could collide once they were released.
_SERVICE_ALLOCATED = ("clusterIP", "clusterIPs")


class SnapshotError(ValueError):
    """A snapshot that cannot be stored or read back."""


def dns_name(*parts: str) -> str:
    """A DNS-1123 subdomain made of `parts` (lower-cased, other characters as '-')."""
    joined = "-".join(parts).lower()
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", joined).strip("-.")
    return cleaned[:253].rstrip("-.")


def snapshot_name(rollout: str, revision: str) -> str:
    return dns_name(SNAPSHOT_PREFIX, rollout, revision)


def last_known_good_name(rollout: str) -> str:
    return dns_name(LAST_KNOWN_GOOD_PREFIX, rollout)


def restorable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what the API server owns, ready to be applied again."""
    clean = copy.deepcopy(dict(obj))
    clean.pop("status", None)
    metadata = clean.get("metadata") or {}
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations") or {}
    for key in _SERVER_ANNOTATIONS:
        annotations.pop(key, None)
    if not annotations:
        metadata.pop("annotations", None)
    if clean.get("kind") == "Service" and clean.get("apiVersion") == "v1":
        for key in _SERVICE_ALLOCATED:
            (clean.get("spec") or {}).pop(key, None)
    return clean


def _canonical(objects: Iterable[Mapping[str, Any]]) -> bytes:
    ordered = sorted((restorable(o) for o in objects), key=lambda o: str(ObjectRef.of(o)))
    return json.dumps(ordered, sort_keys=True, separators=(",", ":")).encode("utf-8")


def digest(objects: Iterable[Mapping[str, Any]]) -> str:
    return hashlib.sha256(_canonical(objects)).hexdigest()


def encode_snapshot(
    rollout: str, revision: str, namespace: str, objects: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The ConfigMap holding `objects` (already fetched live) for `rollout` at `revision`."""
    objects = list(objects)
    payload = _canonical(objects)
    packed = gzip.compress(payload, mtime=0)
    if len(packed) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(
            f"the snapshot of rollout {rollout} is {len(packed)} bytes compressed, over the "
            f"{MAX_SNAPSHOT_BYTES} a ConfigMap can hold"
        )
    refs = sorted(str(ObjectRef.of(o)) for o in objects)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": snapshot_name(rollout, revision),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SNAPSHOT_OF_LABEL: rollout},
            "annotations": {DIGEST_ANNOTATION: hashlib.sha256(payload).hexdigest()},
        },
        "data": {REVISION_KEY: revision, "objects.txt": "\n".join(refs) + "\n"},
        "binaryData": {OBJECTS_KEY: base64.b64encode(packed).decode("ascii")},
    }


def decode_snapshot(config_map: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The objects a snapshot ConfigMap holds."""
    name = (config_map.get("metadata") or {}).get("name")
    packed = (config_map.get("binaryData") or {}).get(OBJECTS_KEY)
    if not packed:
        raise SnapshotError(f"ConfigMap {name} holds no {OBJECTS_KEY}: not a snapshot of ours")
    try:
        objects = json.loads(gzip.decompress(base64.b64decode(packed)))
    except (ValueError, OSError) as error:
        raise SnapshotError(f"ConfigMap {name}: the snapshot cannot be read: {error}") from error
    if not isinstance(objects, list):
        raise SnapshotError(f"ConfigMap {name}: the snapshot is not a list of objects")
    return [o for o in objects if isinstance(o, dict)]


def snapshot_digest(config_map: Mapping[str, Any] | None) -> str | None:
    if not config_map:
        return None
    annotations = (config_map.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(DIGEST_ANNOTATION)
    return str(value) if value else None


def last_known_good(rollout: str, revision: str, namespace: str) -> dict[str, Any]:
    """The pointer ConfigMap naming the snapshot a rollback returns to."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": last_known_good_name(rollout),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SNAPSHOT_OF_LABEL: rollout},
        },
        "data": {REVISION_KEY: revision, "snapshot": snapshot_name(rollout, revision)},
    }
