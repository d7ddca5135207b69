"""Resource quantities of built-in kinds in their canonical string form.

A real API server decodes every `resource.Quantity` field of a built-in kind into a Quantity and
encodes it back as its canonical string, so `cpu: 32` is stored and returned as "32", `0.5` as
"500m" and "1024Mi" as "1Gi"; clients (the typed Python client among them) can rely on strings.
A value that is not a quantity fails decoding with 400 BadRequest. Custom resources are left as
their schema allows (`x-kubernetes-int-or-string` keeps integers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from clustersim.apiserver.errors import bad_request
from clustersim.quantity import QUANTITY_PATTERN_MESSAGE, QuantityError, canonical_quantity

JsonObject = dict[str, Any]

_CONTAINER_GROUPS = ("initContainers", "containers", "ephemeralContainers")
_CONTAINER_STATUS_GROUPS = ("initContainerStatuses", "containerStatuses",
                            "ephemeralContainerStatuses")


def _dict(value: Any) -> JsonObject | None:
    return value if isinstance(value, dict) else None


def _items(value: Any) -> Iterator[JsonObject]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _requirements(owner: JsonObject | None) -> Iterator[JsonObject]:
    """The `limits` and `requests` maps of a ResourceRequirements-like field `resources`."""
    resources = _dict((owner or {}).get("resources"))
    if resources is None:
        return
    for key in ("limits", "requests"):
        found = _dict(resources.get(key))
        if found is not None:
            yield found


def _pod_spec_lists(spec: JsonObject | None) -> Iterator[JsonObject]:
    if spec is None:
        return
    for group in _CONTAINER_GROUPS:
        for container in _items(spec.get(group)):
            yield from _requirements(container)
    overhead = _dict(spec.get("overhead"))
    if overhead is not None:
        yield overhead
    yield from _requirements(spec)  # pod-level resources
    for volume in _items(spec.get("volumes")):
        template = _dict((_dict(volume.get("ephemeral")) or {}).get("volumeClaimTemplate"))
        yield from _requirements(_dict((template or {}).get("spec")))


def _pod_spec_singles(spec: JsonObject | None) -> Iterator[tuple[JsonObject, str]]:
    for volume in _items((spec or {}).get("volumes")):
        empty_dir = _dict(volume.get("emptyDir"))
        if empty_dir is not None and "sizeLimit" in empty_dir:
            yield empty_dir, "sizeLimit"


def _pod_status_lists(status: JsonObject | None) -> Iterator[JsonObject]:
    if status is None:
        return
    for group in _CONTAINER_STATUS_GROUPS:
        for container in _items(status.get(group)):
            allocated = _dict(container.get("allocatedResources"))
            if allocated is not None:
                yield allocated
            yield from _requirements(container)


def _template_spec(obj: JsonObject) -> JsonObject | None:
    template = _dict((_dict(obj.get("spec")) or {}).get("template"))
    return _dict((template or {}).get("spec"))


def _locations(kind: str, obj: JsonObject) -> tuple[list[JsonObject], list[tuple[JsonObject, str]]]:
    """(quantity maps, (holder, key) of single quantities) of one object of a built-in kind."""
    maps: list[JsonObject] = []
    singles: list[tuple[JsonObject, str]] = []
    if kind == "Pod":
        spec = _dict(obj.get("spec"))
        maps.extend(_pod_spec_lists(spec))
        singles.extend(_pod_spec_singles(spec))
        maps.extend(_pod_status_lists(_dict(obj.get("status"))))
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        spec = _template_spec(obj)
        maps.extend(_pod_spec_lists(spec))
        singles.extend(_pod_spec_singles(spec))
        if kind == "StatefulSet":
            for claim in _items((_dict(obj.get("spec")) or {}).get("volumeClaimTemplates")):
                maps.extend(_requirements(_dict(claim.get("spec"))))
    elif kind == "Node":
        status = _dict(obj.get("status")) or {}
        for key in ("capacity", "allocatable"):
            found = _dict(status.get(key))
            if found is not None:
                maps.append(found)
    return maps, singles


def _canonical(value: Any) -> str:
    # a null Quantity decodes to zero
    return "0" if value is None else canonical_quantity(value)


def normalize(kind: str, version: str, obj: JsonObject) -> None:
    """Rewrite every quantity of a built-in object in place to its canonical string; a value
    that is not a quantity answers 400, as the real server's decoder does."""
    maps, singles = _locations(kind, obj)
    try:
        for quantities in maps:
            for name, value in quantities.items():
                quantities[name] = _canonical(value)
        for holder, key in singles:
            holder[key] = _canonical(holder[key])
    except QuantityError as error:
        raise bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: '
                          f"{QUANTITY_PATTERN_MESSAGE}") from error
