"""Object metadata helpers shared by every controller: keys, owner references, timestamps,
conditions and the stable short hashes Kubernetes controllers put in names and labels.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Mapping
from typing import Any

KubeObject = dict[str, Any]

# Kubernetes' rand.SafeEncodeString alphabet: no vowels, no confusable characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime | None = None) -> str:
    """metav1.Time: second precision, Z suffix."""
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: dt.datetime | None = None) -> str:
    """metav1.MicroTime."""
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_nano(moment: dt.datetime | None = None) -> str:
    """The timestamp prefix the kubelet puts on log lines with `timestamps=true`."""
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def object_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def key_of(obj: Mapping[str, Any]) -> str:
    return object_key(namespace_of(obj), name_of(obj))


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> KubeObject:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    return controller_uid(obj) == uid_of(owner)


def generation_of(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def safe_encode(number: int) -> str:
    """rand.SafeEncodeString of the decimal digits, as controllers render hashes."""
    return "".join(_SAFE_ALPHABET[int(d) % len(_SAFE_ALPHABET)] for d in str(number))


def stable_hash(value: Any, collision_count: int = 0) -> str:
    """A short, deterministic, DNS-safe hash of a JSON-able value (pod-template-hash style)."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        encoded += str(collision_count).encode()
    return safe_encode(fnv32a(encoded))


def random_suffix(length: int = 5) -> str:
    """The random tail of generated names (`<replicaset>-x7kq2`)."""
    return "".join(random.choice(_SAFE_ALPHABET) for _ in range(length))


def find_condition(conditions: list[KubeObject] | None, kind: str) -> KubeObject | None:
    for condition in conditions or []:
        if condition.get("type") == kind:
            return condition
    return None


def set_condition(
    conditions: list[KubeObject],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    observed_generation: int | None = None,
    now: str | None = None,
    heartbeat_field: str | None = None,
) -> bool:
    """Set or replace a condition in place; lastTransitionTime moves only when status changes.

    Returns True when anything visible changed. `heartbeat_field` names an extra timestamp the
    kind carries (Deployments have lastUpdateTime) that moves with every change.
    """
    stamp = now or rfc3339()
    current = find_condition(conditions, kind)
    wanted: KubeObject = {"type": kind, "status": status, "reason": reason, "message": message}
    if observed_generation is not None:
        wanted["observedGeneration"] = observed_generation
    if current is not None:
        same = all(current.get(k) == v for k, v in wanted.items())
        if same:
            return False
        transition = current.get("lastTransitionTime") if current.get("status") == status else None
        current.clear()
        current.update(wanted)
        current["lastTransitionTime"] = transition or stamp
        if heartbeat_field:
            current[heartbeat_field] = stamp
        return True
    wanted["lastTransitionTime"] = stamp
    if heartbeat_field:
        wanted[heartbeat_field] = stamp
    conditions.append(wanted)
    return True


def deep_get(obj: Mapping[str, Any], *path: str | int) -> Any:
    """obj[a][b]... or None when any step is missing."""
    current: Any = obj
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return None
            current = current[step]
        else:
            if not isinstance(current, Mapping):
                return None
            current = current.get(step)
        if current is None:
            return None
    return current


def merge_patch_diff(current: Any, desired: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `current` into `desired`.

    Keys missing from `desired` become null (removed); lists and scalars are replaced whole.
    """
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return desired
    patch: dict[str, Any] = {}
    for key in current.keys() - desired.keys():
        patch[key] = None
    for key, value in desired.items():
        if key not in current:
            patch[key] = value
        elif current[key] != value:
            patch[key] = merge_patch_diff(current[key], value)
    return patch
