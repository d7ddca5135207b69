"""Field paths and sets in the FieldsV1 vocabulary of server-side apply.

A path is a tuple of FieldsV1 path elements: `f:<field>` for an object field, `k:<json>` for an
element of a list keyed by its map keys, `v:<json>` for an element of a set. A field set is a
Python set of such paths; `to_fields_v1` and `from_fields_v1` convert to and from the nested form
stored in `metadata.managedFields[].fieldsV1`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from clustersim.apiserver.shapes import Shape

Path = tuple[str, ...]
FieldSet = set[Path]

# metadata fields the server owns; they never appear in anyone's field set
SERVER_METADATA = frozenset({
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
})


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def element_key(item: Any, shape: Shape) -> str | None:
    """The `k:` path element of an item of a keyed list (None when a key is missing)."""
    if not isinstance(item, dict):
        return None
    key: dict[str, Any] = {}
    for name in shape.map_keys:
        if name in item:
            key[name] = item[name]
        elif name in shape.key_defaults:
            key[name] = shape.key_defaults[name]
        else:
            return None
    return "k:" + _encode(key)


def _children(value: Any, shape: Shape) -> Iterator[tuple[str, Any, Shape]]:
    """The (path element, child value, child shape) of a granular node."""
    if isinstance(value, dict):
        for name, child in value.items():
            yield "f:" + name, child, shape.child(name)
    elif isinstance(value, list):
        if shape.list_type == "map":
            item_shape = shape.item()
            for item in value:
                key = element_key(item, shape)
                if key is not None:
                    yield key, item, item_shape
        elif shape.list_type == "set":
            for item in value:
                yield "v:" + _encode(item), item, shape.item()


def _is_granular(value: Any, shape: Shape) -> bool:
    if isinstance(value, dict):
        return not shape.atomic and shape.kind != "scalar"
    if isinstance(value, list):
        return shape.kind == "list" and shape.list_type in ("map", "set")
    return False


def _top_level(obj: dict[str, Any], shape: Shape) -> Iterator[tuple[str, Any, Shape]]:
    for name, child in obj.items():
        if name in ("apiVersion", "kind"):
            continue
        if name == "metadata" and isinstance(child, dict):
            kept = {k: v for k, v in child.items() if k not in SERVER_METADATA}
            if kept:
                yield "f:metadata", kept, shape.child("metadata")
            continue
        yield "f:" + name, child, shape.child(name)


def applied_fields(obj: dict[str, Any], shape: Shape) -> FieldSet:
    """The fields an applied configuration sets: its leaves and its keyed list elements."""
    result: FieldSet = set()
    for element, child, child_shape in _top_level(obj, shape):
        _collect_applied(child, child_shape, (element,), result)
    return result


def _collect_applied(value: Any, shape: Shape, path: Path, out: FieldSet) -> None:
    if not _is_granular(value, shape) or not value:
        out.add(path)
        return
    for element, child, child_shape in _children(value, shape):
        child_path = (*path, element)
        if element[0] in "kv":
            out.add(child_path)
            if element[0] == "v":
                continue
        _collect_applied(child, child_shape, child_path, out)


def all_paths(obj: dict[str, Any], shape: Shape) -> FieldSet:
    """Every node path present in an object, containers included."""
    result: FieldSet = set()
    for element, child, child_shape in _top_level(obj, shape):
        _collect_all(child, child_shape, (element,), result)
    return result


def _collect_all(value: Any, shape: Shape, path: Path, out: FieldSet) -> None:
    out.add(path)
    if _is_granular(value, shape):
        for element, child, child_shape in _children(value, shape):
            _collect_all(child, child_shape, (*path, element), out)


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any], shape: Shape) -> FieldSet:
    """The fields an update sets or changes, as the real server records them for the updater."""
    result: FieldSet = set()
    old_children = {e: (c, s) for e, c, s in _top_level(old, shape)} if old else {}
    for element, child, child_shape in _top_level(new, shape):
        previous = old_children.get(element)
        _collect_changed(previous[0] if previous else _ABSENT, child, child_shape, (element,),
                         result)
    return result


_ABSENT = object()


def _collect_changed(old: Any, new: Any, shape: Shape, path: Path, out: FieldSet) -> None:
    if old is not _ABSENT and old == new:
        return
    if not _is_granular(new, shape):
        out.add(path)
        return
    if old is _ABSENT or type(old) is not type(new):
        out.add(path)
        old_children: dict[str, Any] = {}
    else:
        old_children = {e: c for e, c, _ in _children(old, shape)}
    for element, child, child_shape in _children(new, shape):
        previous = old_children.get(element, _ABSENT)
        if element[0] == "v":
            if previous is _ABSENT:
                out.add((*path, element))
            continue
        _collect_changed(previous, child, child_shape, (*path, element), out)


def to_fields_v1(paths: FieldSet) -> dict[str, Any]:
    """The nested FieldsV1 form of a field set."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        node.setdefault(".", {})
    return _drop_leaf_markers(tree)


def _drop_leaf_markers(node: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, child in node.items():
        if key == ".":
            continue
        if list(child) == ["."]:
            result[key] = {}
        else:
            result[key] = _drop_leaf_markers(child)
            if "." in child:
                result[key]["."] = {}
    return dict(sorted(result.items(), key=lambda kv: (kv[0] != ".", kv[0])))


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> FieldSet:
    result: FieldSet = set()
    for key, child in tree.items():
        if key == ".":
            result.add(prefix)
            continue
        path = (*prefix, key)
        if not child:
            result.add(path)
        else:
            result |= from_fields_v1(child, path)
    return result


def _locate(obj: Any, element: str, shape: Shape) -> tuple[bool, Any, Shape]:
    if element.startswith("f:"):
        name = element[2:]
        if isinstance(obj, dict) and name in obj:
            return True, obj[name], shape.child(name)
        return False, None, shape
    if isinstance(obj, list):
        for item in obj:
            if element[0] == "k" and element_key(item, shape) == element:
                return True, item, shape.item()
            if element[0] == "v" and "v:" + _encode(item) == element:
                return True, item, shape.item()
    return False, None, shape


def value_at(obj: dict[str, Any], path: Path, shape: Shape) -> tuple[bool, Any]:
    """Whether a path exists in an object, and its value."""
    node: Any = obj
    node_shape = shape
    for element in path:
        found, node, node_shape = _locate(node, element, node_shape)
        if not found:
            return False, None
    return True, node


def remove_path(obj: dict[str, Any], path: Path, shape: Shape) -> None:
    """Remove the node at `path` from an object in place (no-op when absent)."""
    node: Any = obj
    node_shape = shape
    for element in path[:-1]:
        found, node, node_shape = _locate(node, element, node_shape)
        if not found:
            return
    last = path[-1]
    if last.startswith("f:"):
        if isinstance(node, dict):
            node.pop(last[2:], None)
        return
    if isinstance(node, list):
        for index, item in enumerate(node):
            if (last[0] == "k" and element_key(item, node_shape) == last) or (
                    last[0] == "v" and "v:" + _encode(item) == last):
                del node[index]
                return


def has_descendant(paths: FieldSet, path: Path) -> bool:
    size = len(path)
    return any(len(p) >= size and p[:size] == path for p in paths)
