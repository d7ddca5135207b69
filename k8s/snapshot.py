"""Snapshots of the objects a rollout owns, as a ConfigMap of ours in the target namespace.

Where it sits: pure encoding used by the snapshot, last-known-good and restore activities in
activities/kube.py.

What a snapshot holds: the *applied configuration* of each object, i.e. the manifest as
llmd-rollout applied it, never the whole live object. It is extracted from the live object's
`metadata.managedFields`: the entry of our field manager (`llmd-rollout`, operation `Apply`, no
subresource) lists, in the FieldsV1 vocabulary, exactly the fields our last server-side apply set
(`f:<field>` for object fields, `k:<json>` for keyed list elements, `v:<json>` for set elements,
`i:<n>` for list positions, `.` for the node itself); the snapshot keeps those fields with their
live values, plus apiVersion, kind, name and namespace. This is client-go's `Extract*`
(applyconfigurations) pattern, the documented way to read back "what this manager applied".

Why not the whole live object: a restore re-applies the snapshot with the same field manager,
and server-side apply makes the manager own every field it sends. Re-applying a live object
would make llmd-rollout own what the API server, controllers or admission webhooks defaulted
(e.g. LeaderWorkerSet `spec.networkConfig.subdomainPolicy: Shared`, Service `clusterIP`); the
next apply_model_service, which does not send those fields, would then ask the server to remove
them, and the LWS webhook rejects that ("cannot change subdomainPolicy from a non-null value to
null"). Re-applying the applied configuration instead leaves ownership exactly as the original
apply left it, so after a rollback the next rollout behaves as after a normal apply.

Why not the rendered manifests kept by apply_model_service: the snapshot is taken after the fact
(phase 9), of every object the rollout owns, whatever part, partition or surge applied it last;
the managed fields are the server's own record of that, and need no second copy of each object
in an annotation (LWS templates are large).

An object the rollout's labels select but that llmd-rollout never applied (no Apply entry of
ours) is kept by identity only: a restore neither applies nor deletes it. Snapshots written
before this format (no `format` key: whole objects) are still read and restored as they are.

The spec that produced the objects is stored beside them (`spec.json`; a RolloutSpec names
the HF token's environment variable, never its value), so a rollback can wait for and verify
the old version under the old names. The objects go gzip-compressed in `binaryData` (a
ConfigMap holds at most 1 MiB), with a digest so re-taking an unchanged snapshot is a no-op,
and a readable list of what is inside.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from spec.activity_io import (
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SNAPSHOT_OF_LABEL,
    ObjectRef,
)

# Re-exported: activities/kube.py and its tests name them here.
from spec.records import dns_name as dns_name
from spec.records import last_known_good_name as last_known_good_name
from spec.records import snapshot_name as snapshot_name
from spec.rollout import RolloutSpec

OBJECTS_KEY = "objects.json.gz"
SPEC_KEY = "spec.json"
FORMAT_KEY = "format"
FORMAT = "applied-configuration/v1"
"""Snapshots holding applied configurations; without a `format` key a snapshot holds whole
(cleaned) live objects, as written before this format existed."""
DIGEST_ANNOTATION = "llmd-rollout.llm-d.ai/snapshot-digest"
REVISION_KEY = "revision"
# Leave room under the API server's 1 MiB object limit for metadata.
MAX_SNAPSHOT_BYTES = 900 * 1024

_IDENTITY_METADATA = ("name", "namespace")
_APPLY = "Apply"


class SnapshotError(ValueError):
    """A snapshot that cannot be stored or read back."""


# --- the applied configuration ---------------------------------------------------------------


def applied_fields(obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any] | None:
    """The FieldsV1 tree of `manager`'s Apply entry on `obj` (None: it never applied `obj`)."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    for entry in entries:
        if (
            isinstance(entry, Mapping)
            and entry.get("manager") == manager
            and entry.get("operation") == _APPLY
            and not entry.get("subresource")
        ):
            fields = entry.get("fieldsV1")
            return dict(fields) if isinstance(fields, Mapping) else {}
    return None


def identity(obj: Mapping[str, Any]) -> dict[str, Any]:
    """apiVersion, kind, name and namespace of `obj`: what every applied configuration holds."""
    metadata = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: metadata[k] for k in _IDENTITY_METADATA if metadata.get(k) is not None},
    }


def applied_configuration(obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
    """The part of live `obj` that `manager` applied: its identity plus every field of the
    manager's Apply entry, with the live values (identity only if the manager never applied)."""
    extracted = identity(obj)
    fields = applied_fields(obj, manager)
    if not fields:
        return extracted
    owned = _extract(obj, fields)
    if isinstance(owned, dict):
        for key, value in owned.items():
            if key == "metadata" and isinstance(value, dict):
                extracted["metadata"] = {**extracted["metadata"], **value}
            elif key not in ("apiVersion", "kind"):
                extracted[key] = value
    return extracted


def holds_configuration(obj: Mapping[str, Any]) -> bool:
    """Whether an applied configuration sets anything beyond the object's identity."""
    return obj != identity(obj)


def _extract(value: Any, fields: Mapping[str, Any]) -> Any:
    """`value` reduced to the fields a FieldsV1 tree names. An empty tree is a leaf: the whole
    value (a scalar, or an atomic map or list) is owned; a tree of only `.` owns the node itself
    but none of its members."""
    if not fields:
        return copy.deepcopy(value)
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, sub in fields.items():
            name = key[2:]
            if key.startswith("f:") and value.get(name) is not None:
                result[name] = _extract(value[name], sub or {})
        return result
    if isinstance(value, list):
        chosen = _owned_elements(value, fields)
        return [_element(value[i], chosen[i], fields[chosen[i]]) for i in sorted(chosen)]
    return copy.deepcopy(value)


def _owned_elements(items: list[Any], fields: Mapping[str, Any]) -> dict[int, str]:
    """Which list element each `k:`, `v:` and `i:` entry names: index -> entry."""
    chosen: dict[int, str] = {}
    for key in fields:
        index: int | None = None
        if key.startswith("k:"):
            index = _keyed_index(items, _decode(key), chosen)
        elif key.startswith("v:"):
            wanted = _decode(key, _ABSENT)
            index = next(
                (i for i, item in enumerate(items) if i not in chosen and item == wanted), None
            )
        elif key.startswith("i:") and key[2:].isdigit() and int(key[2:]) < len(items):
            index = int(key[2:])
        if index is not None:
            chosen[index] = key
    return chosen


def _keyed_index(items: list[Any], wanted: Any, taken: Mapping[int, str]) -> int | None:
    """The element whose map keys equal `wanted`. An element lacking a key field still matches
    when no element matches exactly: the server filled that field in from the schema's default
    when it computed the key."""
    if not isinstance(wanted, dict) or not wanted:
        return None
    candidates = [
        (i, item) for i, item in enumerate(items) if isinstance(item, Mapping) and i not in taken
    ]
    for i, item in candidates:
        if all(k in item and item[k] == v for k, v in wanted.items()):
            return i
    for i, item in candidates:
        present = [k for k in wanted if k in item]
        if present and all(item[k] == wanted[k] for k in present):
            return i
    return None


def _element(item: Any, key: str, fields: Mapping[str, Any]) -> Any:
    element = _extract(item, fields or {})
    wanted = _decode(key) if key.startswith("k:") else None
    if isinstance(element, dict) and isinstance(wanted, dict) and isinstance(item, Mapping):
        # The key fields identify the element: an applied element always carries them.
        element = {**{k: item[k] for k in wanted if k in item}, **element}
    return element


_ABSENT = object()


def _decode(key: str, default: Any = None) -> Any:
    try:
        return json.loads(key[2:])
    except ValueError:
        return default


# --- the snapshot ConfigMap ------------------------------------------------------------------


def _canonical(objects: Iterable[Mapping[str, Any]]) -> bytes:
    ordered = sorted(
        (applied_configuration(o) for o in objects), key=lambda o: str(ObjectRef.of(o))
    )
    return json.dumps(ordered, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _spec_text(spec: RolloutSpec | None) -> str | None:
    return None if spec is None else spec.model_dump_json()


def _digest(payload: bytes, spec_text: str | None) -> str:
    hashed = hashlib.sha256(payload)
    if spec_text is not None:
        hashed.update(b"\0" + spec_text.encode("utf-8"))
    return hashed.hexdigest()


def digest(objects: Iterable[Mapping[str, Any]], spec: RolloutSpec | None = None) -> str:
    """What a snapshot of these live objects (and this spec) would be, as a hash."""
    return _digest(_canonical(objects), _spec_text(spec))


def encode_snapshot(
    rollout: str,
    revision: str,
    namespace: str,
    objects: Iterable[Mapping[str, Any]],
    spec: RolloutSpec | None = None,
) -> dict[str, Any]:
    """The ConfigMap holding the applied configurations of `objects` (fetched live, with their
    managedFields) for `rollout` at `revision`, and the spec that produced them if known."""
    objects = list(objects)
    payload = _canonical(objects)
    packed = gzip.compress(payload, mtime=0)
    spec_text = _spec_text(spec)
    size = len(packed) + len(spec_text or "")
    if size > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(
            f"the snapshot of rollout {rollout} is {size} bytes compressed, over the "
            f"{MAX_SNAPSHOT_BYTES} a ConfigMap can hold"
        )
    refs = sorted(str(ObjectRef.of(o)) for o in objects)
    data = {
        REVISION_KEY: revision,
        FORMAT_KEY: FORMAT,
        "objects.txt": "\n".join(refs) + "\n",
    }
    if spec_text is not None:
        data[SPEC_KEY] = spec_text
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": snapshot_name(rollout, revision),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SNAPSHOT_OF_LABEL: rollout},
            "annotations": {DIGEST_ANNOTATION: _digest(payload, spec_text)},
        },
        "data": data,
        "binaryData": {OBJECTS_KEY: base64.b64encode(packed).decode("ascii")},
    }


def decode_snapshot(config_map: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The objects a snapshot ConfigMap holds (applied configurations, or whole objects in a
    snapshot written before the `format` key existed)."""
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


def decode_spec(config_map: Mapping[str, Any]) -> RolloutSpec | None:
    """The spec stored with a snapshot (None for snapshots taken without one)."""
    text = (config_map.get("data") or {}).get(SPEC_KEY)
    if not text:
        return None
    try:
        return RolloutSpec.model_validate_json(text)
    except ValidationError as error:
        name = (config_map.get("metadata") or {}).get("name")
        raise SnapshotError(f"ConfigMap {name}: the stored spec is not valid: {error}") from error


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
