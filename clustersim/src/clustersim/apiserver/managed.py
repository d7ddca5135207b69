"""Field ownership: `metadata.managedFields` for updates and server-side apply.

Every write records which manager set which fields. An update takes ownership of what it
changed; an apply declares the full set of fields its manager cares about, conflicts with other
managers that own a field it sets to a different value (unless forced), and removes fields it
stopped applying when nobody else owns them.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from clustersim.apiserver.errors import ApiError
from clustersim.apiserver.fieldsets import (
    FieldSet,
    Path,
    all_paths,
    applied_fields,
    changed_fields,
    element_key,
    from_fields_v1,
    has_descendant,
    remove_path,
    to_fields_v1,
    value_at,
)
from clustersim.apiserver.shapes import Shape

JsonObject = dict[str, Any]


@dataclass
class Ownership:
    """One managedFields entry with its field set decoded."""

    manager: str
    operation: str
    api_version: str
    time: str
    subresource: str
    fields: FieldSet

    @property
    def identity(self) -> tuple[str, str, str]:
        return self.manager, self.operation, self.subresource

    # the stored entry this was read from, and its state then: an ownership a write left as
    # it was is written back as that same entry, without rendering its fields again
    source: JsonObject | None = None
    source_state: tuple[str, str, str, str, str, frozenset[Path]] | None = None

    def state(self) -> tuple[str, str, str, str, str, frozenset[Path]]:
        return (self.manager, self.operation, self.api_version, self.time, self.subresource,
                frozenset(self.fields))

    def entry(self) -> JsonObject:
        state = self.state()
        if self.source is not None and state == self.source_state:
            return self.source
        # the same fields with a new time (a manager updating what it already owns, the
        # common case) keep their rendered FieldsV1
        same_fields = self.source is not None and self.source_state is not None and \
            state[5] == self.source_state[5]
        entry: JsonObject = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.source["fieldsV1"] if same_fields and self.source is not None
            else to_fields_v1(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def read_ownerships(obj: JsonObject | None) -> list[Ownership]:
    if not obj:
        return []
    entries = obj.get("metadata", {}).get("managedFields") or []
    result = []
    for entry in entries:
        if not isinstance(entry, dict) or "manager" not in entry:
            continue
        ownership = Ownership(
            manager=str(entry.get("manager", "")),
            operation=str(entry.get("operation", "Update")),
            api_version=str(entry.get("apiVersion", "")),
            time=str(entry.get("time", "")),
            subresource=str(entry.get("subresource", "")),
            fields=set(_decoded_fields(entry)),
        )
        ownership.source = entry
        ownership.source_state = ownership.state()
        result.append(ownership)
    return result


# Decoded field sets of stored managedFields entries. Stored objects are never mutated and a
# write keeps the entries it did not change, so the same entry dicts come back write after
# write; the cache holds each entry it is keyed by, so an id is never reused while cached.
_DECODED: OrderedDict[int, tuple[JsonObject, frozenset[Path]]] = OrderedDict()
_DECODED_LIMIT = 8192


def _decoded_fields(entry: JsonObject) -> frozenset[Path]:
    cached = _DECODED.get(id(entry))
    if cached is not None and cached[0] is entry:
        _DECODED.move_to_end(id(entry))
        return cached[1]
    fields = frozenset(from_fields_v1(entry.get("fieldsV1") or {}))
    _DECODED[id(entry)] = (entry, fields)
    if len(_DECODED) > _DECODED_LIMIT:
        _DECODED.popitem(last=False)
    return fields


def _write_ownerships(obj: JsonObject, ownerships: list[Ownership], shape: Shape,
                      gone: FieldSet | None = None) -> None:
    """Write the entries, each limited to the fields `obj` has: the paths in `gone` (the
    fields a write removed) when the caller knows them, else every path present."""
    if gone is None:
        present = all_paths(obj, shape)
    entries = []
    for ownership in ownerships:
        if gone is None:
            ownership.fields &= present
        elif gone:
            ownership.fields -= gone
        if ownership.fields:
            entries.append(ownership.entry())
    metadata = obj.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)


def _without_managed_fields(obj: JsonObject) -> JsonObject:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    stripped = dict(obj)
    stripped["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
    return stripped


def record_update(old: JsonObject | None, new: JsonObject, manager: str, api_version: str,
                  subresource: str, shape: Shape, now: str) -> None:
    """Give `manager` the fields this update changed, taking them from everyone else."""
    ownerships = read_ownerships(old)
    requested = new.get("metadata", {}).get("managedFields")
    if requested == [{}]:
        ownerships = []
    old_plain = _without_managed_fields(old) if old else None
    new_plain = _without_managed_fields(new)
    changed = changed_fields(old_plain, new_plain, shape)
    if changed:
        mine: Ownership | None = None
        for ownership in ownerships:
            if ownership.identity == (manager, "Update", subresource):
                mine = ownership
            else:
                ownership.fields -= changed
        if mine is None:
            mine = Ownership(manager, "Update", api_version, now, subresource, set())
            ownerships.append(mine)
        mine.fields |= changed
        mine.api_version = api_version
        mine.time = now
    gone: FieldSet | None = None
    if old_plain is not None:
        # Owned fields are fields the old object had, or ones this write set. Those this write
        # removed are among the old object's paths that differ in the new one: checking just
        # those costs far less than listing every path of the new object.
        differing = changed_fields(new_plain, old_plain, shape)
        gone = {path for path in differing if not value_at(new_plain, path, shape)[0]}
    _write_ownerships(new, ownerships, shape, gone)


def render_path(path: Path) -> str:
    rendered = ""
    for element in path:
        if element.startswith("f:"):
            rendered += "." + element[2:]
        elif element.startswith("k:"):
            key = json.loads(element[2:])
            rendered += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
        elif element.startswith("v:"):
            rendered += "[=" + element[2:] + "]"
        else:
            rendered += "[" + element + "]"
    return rendered


def _conflict_error(conflicts: dict[tuple[str, str], list[Path]]) -> ApiError:
    total = sum(len(paths) for paths in conflicts.values())
    causes = []
    sections = []
    for (manager, api_version), paths in conflicts.items():
        rendered = sorted(render_path(p) for p in paths)
        for field in rendered:
            causes.append({"reason": "FieldManagerConflict",
                           "message": f'conflict with "{manager}" using {api_version}',
                           "field": field})
        if len(rendered) == 1:
            sections.append(f'conflict with "{manager}" using {api_version}: {rendered[0]}')
        else:
            listing = "\n".join(f"- {field}" for field in rendered)
            sections.append(f'conflicts with "{manager}" using {api_version}:\n{listing}')
    noun = "conflict" if total == 1 else "conflicts"
    message = f"Apply failed with {total} {noun}: " + "\n".join(sections)
    return ApiError(409, "Conflict", message, {"causes": causes})


def merge_applied(live: Any, applied: Any, shape: Shape) -> Any:
    """Merge an applied configuration into the live object following list and map semantics."""
    if isinstance(applied, dict) and isinstance(live, dict) and not shape.atomic \
            and shape.kind != "scalar":
        merged = dict(live)
        for name, value in applied.items():
            if value is None:
                merged.pop(name, None)
            elif name in live:
                merged[name] = merge_applied(live[name], value, shape.child(name))
            else:
                merged[name] = copy.deepcopy(value)
        return merged
    if isinstance(applied, list) and isinstance(live, list) and shape.kind == "list":
        if shape.list_type == "map":
            return _merge_keyed(live, applied, shape)
        if shape.list_type == "set":
            merged_set = list(live)
            merged_set.extend(copy.deepcopy(v) for v in applied if v not in live)
            return merged_set
    return copy.deepcopy(applied)


def _merge_keyed(live: list[Any], applied: list[Any], shape: Shape) -> list[Any]:
    applied_by_key = {element_key(item, shape): item for item in applied}
    merged = []
    seen = set()
    for item in live:
        key = element_key(item, shape)
        if key in applied_by_key:
            merged.append(merge_applied(item, applied_by_key[key], shape.item()))
            seen.add(key)
        else:
            merged.append(item)
    merged.extend(copy.deepcopy(item) for item in applied
                  if element_key(item, shape) not in seen)
    return merged


def server_side_apply(live: JsonObject | None, applied: JsonObject, manager: str,
                      api_version: str, subresource: str, force: bool, shape: Shape,
                      now: str) -> JsonObject:
    """The object after `manager` applies `applied` to `live` (which may not exist yet)."""
    ownerships = read_ownerships(live)
    applied_set = applied_fields(applied, shape)
    mine: Ownership | None = None
    others: list[Ownership] = []
    for ownership in ownerships:
        if ownership.identity == (manager, "Apply", subresource):
            mine = ownership
        else:
            others.append(ownership)

    base = _without_managed_fields(live) if live else {}
    conflicts: dict[tuple[str, str], list[Path]] = {}
    for other in others:
        for path in applied_set & other.fields:
            live_found, live_value = value_at(base, path, shape)
            if not live_found or _is_element(path):
                continue
            _, applied_value = value_at(applied, path, shape)
            if live_value != applied_value:
                conflicts.setdefault((other.manager, other.api_version), []).append(path)
    if conflicts and not force:
        raise _conflict_error(conflicts)
    if conflicts:
        lost = {path for paths in conflicts.values() for path in paths}
        for other in others:
            other.fields -= lost

    merged = merge_applied(base, applied, shape)
    if mine is not None:
        owned_by_others: FieldSet = set()
        for other in others:
            owned_by_others |= other.fields
        dropped = mine.fields - applied_set
        for path in sorted(dropped, key=len, reverse=True):
            if path in owned_by_others or has_descendant(owned_by_others, path):
                continue
            if has_descendant(applied_set, path):
                continue
            remove_path(merged, path, shape)
    if mine is None:
        mine = Ownership(manager, "Apply", api_version, now, subresource, set())
        ownerships.append(mine)
    if mine.fields != applied_set or mine.api_version != api_version:
        mine.time = now
    mine.fields = set(applied_set)
    mine.api_version = api_version
    result: JsonObject = merged
    _write_ownerships(result, ownerships, shape)
    return result


def _is_element(path: Path) -> bool:
    return bool(path) and path[-1][:2] in ("k:", "v:")

