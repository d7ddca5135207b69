"""The three classic patch formats: JSON patch, JSON merge patch and strategic merge patch.

Strategic merge patch follows the built-in kinds' merge keys and strategies (see `shapes`),
including the `$patch`, `$retainKeys`, `$deleteFromPrimitiveList` and `$setElementOrder`
directives that kubectl and helm generate.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from clustersim.apiserver.errors import ApiError, bad_request
from clustersim.apiserver.shapes import Shape


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f"add operation does not apply: doc is missing path: {path}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _container(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _unprocessable(f"doc is missing path: \"{path}\": missing value")
    return node


def _index(node: list[Any], part: str, path: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(node)
    if not part.isdigit():
        raise _unprocessable(f"unable to access invalid index: {part}")
    index = int(part)
    limit = len(node) if allow_end else len(node) - 1
    if index > limit:
        raise _unprocessable(f"unable to access invalid index: {index}")
    return index


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    return _container(doc, parts, path)


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _container(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise _unprocessable(f"add operation does not apply: doc is missing path: \"{path}\"")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent = _container(doc, parts[:-1], path)
    last = parts[-1] if parts else ""
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, allow_end=False))
    raise _unprocessable(f"remove operation does not apply: doc is missing path: \"{path}\"")


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 patch to a copy of `doc`."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict):
            raise bad_request("invalid JSON patch operation")
        op = operation.get("op")
        path = str(operation.get("path", ""))
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(result, path)
        elif op == "replace":
            _get(result, path)
            if _pointer(path):
                _remove(result, path)
            result = _add(result, path, copy.deepcopy(operation.get("value")))
        elif op == "move":
            value = _remove(result, str(operation.get("from", "")))
            result = _add(result, path, value)
        elif op == "copy":
            value = copy.deepcopy(_get(result, str(operation.get("from", ""))))
            result = _add(result, path, value)
        elif op == "test":
            if _get(result, path) != operation.get("value"):
                raise _unprocessable(f"testing value {path} failed: test failed")
        else:
            raise _unprocessable(f"Unexpected kind: {op}")
    return result


# ---------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------
# strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_ELEMENT_ORDER = "$setElementOrder/"


class _Deleted:
    """Marks a map that a `$patch: delete` directive removes."""


_DELETED = _Deleted()


def strategic_merge_patch(original: dict[str, Any], patch: Any, shape: Shape) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    merged = _merge_map(original, patch, shape)
    return merged if isinstance(merged, dict) else {}


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items()
                if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value
                if not (isinstance(v, dict) and v.get(_DIRECTIVE) in ("delete", "replace"))]
    return value


def _merge_map(original: Any, patch: dict[str, Any], shape: Shape) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        replaced: dict[str, Any] = _strip_directives(patch)
        return replaced
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}")
    result = dict(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN_KEYS):
            continue
        if key.startswith(_ELEMENT_ORDER):
            orders[key[len(_ELEMENT_ORDER):]] = value if isinstance(value, list) else []
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child_shape = shape.child(key)
        current = result.get(key)
        if isinstance(value, dict) and not child_shape.atomic:
            merged = _merge_map(current, value, child_shape)
            if isinstance(merged, _Deleted):
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(current if isinstance(current, list) else [], value,
                                      child_shape)
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, shape.child(field))
    retain = patch.get(_RETAIN_KEYS)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: list[Any], patch: list[Any], shape: Shape) -> list[Any]:
    merge_key = shape.smp_merge_key
    replace = any(isinstance(item, dict) and item.get(_DIRECTIVE) == "replace"
                  for item in patch)
    if merge_key is None or replace:
        stripped: list[Any] = _strip_directives(patch)
        return stripped
    if merge_key == "":
        merged = list(original)
        merged.extend(v for v in patch if v not in merged)
        return merged
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict):
            if item not in result:
                result.append(item)
            continue
        if merge_key not in item:
            raise bad_request(f"map: {json.dumps(item)} does not contain declared merge key: "
                              f"{merge_key}")
        position = next((i for i, existing in enumerate(result)
                         if isinstance(existing, dict)
                         and existing.get(merge_key) == item[merge_key]), None)
        if item.get(_DIRECTIVE) == "delete":
            if position is not None:
                del result[position]
            continue
        if position is None:
            result.append(_strip_directives(item))
        else:
            merged = _merge_map(result[position], item, shape.item())
            if isinstance(merged, _Deleted):
                del result[position]
            else:
                result[position] = merged
    return result


def _reorder(items: list[Any], order: list[Any], shape: Shape) -> list[Any]:
    merge_key = shape.smp_merge_key

    def identity(value: Any) -> str:
        if merge_key and isinstance(value, dict):
            return json.dumps(value.get(merge_key), sort_keys=True)
        return json.dumps(value, sort_keys=True)

    rank = {identity(v): i for i, v in enumerate(order)}
    ordered = sorted((item for item in items if identity(item) in rank),
                     key=lambda item: rank[identity(item)])
    rest = [item for item in items if identity(item) not in rank]
    return ordered + rest
