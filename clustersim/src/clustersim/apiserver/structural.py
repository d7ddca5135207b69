"""Structural-schema semantics of custom resources: pruning, defaulting and validation.

Given a CRD version's openAPIV3Schema, this module does what the real apiextensions server does
to an incoming custom resource: drop (or report) fields the schema does not declare, apply
`default`s, and validate types, enums, patterns, bounds, required fields and list uniqueness,
answering with the real error messages. CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from typing import Any

from clustersim.apiserver.errors import (
    FieldError,
    duplicate,
    invalid_value,
    required_value,
    unsupported_value,
)
from clustersim.apiserver.shapes import OBJECT_META, SCALAR, Shape

JsonObject = dict[str, Any]

OBJECT_META_FIELDS = frozenset(OBJECT_META.fields)
_TOP_LEVEL = ("apiVersion", "kind", "metadata")


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _preserves_unknown(schema: JsonObject) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


# ---------------------------------------------------------------------------------------------
# pruning


def prune(obj: JsonObject, schema: JsonObject) -> list[str]:
    """Remove undeclared fields from a custom resource in place; return their paths."""
    unknown: list[str] = []
    for key in list(obj):
        if key in _TOP_LEVEL:
            continue
        declared = schema.get("properties", {}).get(key)
        if declared is None and not _preserves_unknown(schema):
            unknown.append(key)
            del obj[key]
        elif declared is not None:
            _prune_value(obj[key], declared, key, unknown)
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        unknown.extend(prune_metadata(metadata, "metadata"))
    return unknown


def prune_metadata(metadata: JsonObject, path: str) -> list[str]:
    unknown = [key for key in metadata if key not in OBJECT_META_FIELDS]
    for key in unknown:
        del metadata[key]
    return [join(path, key) for key in unknown]


def _prune_value(value: Any, schema: JsonObject, path: str, unknown: list[str]) -> None:
    if isinstance(value, dict):
        _prune_object(value, schema, path, unknown)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _prune_value(item, items, f"{path}[{index}]", unknown)


def _prune_object(value: JsonObject, schema: JsonObject, path: str, unknown: list[str]) -> None:
    if schema.get("x-kubernetes-embedded-resource"):
        metadata = value.get("metadata")
        if isinstance(metadata, dict):
            unknown.extend(prune_metadata(metadata, join(path, "metadata")))
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    preserve = _preserves_unknown(schema)
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    for key in list(value):
        child_path = join(path, key)
        if properties is not None and key in properties:
            _prune_value(value[key], properties[key], child_path, unknown)
        elif isinstance(additional, dict):
            _prune_value(value[key], additional, child_path, unknown)
        elif (additional is True or preserve or (embedded and key in _TOP_LEVEL)
              or (properties is None and additional is None and not schema.get("type"))):
            continue
        else:
            unknown.append(child_path)
            del value[key]


# ---------------------------------------------------------------------------------------------
# defaulting


def apply_defaults(value: Any, schema: JsonObject) -> Any:
    """Fill in `default`s below `value` in place (the top-level object is never replaced)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if "default" in sub and (key not in value or
                                     (value[key] is None and not sub.get("nullable"))):
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in value:
                if key not in properties:
                    apply_defaults(value[key], additional)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                apply_defaults(item, items)
    return value


# ---------------------------------------------------------------------------------------------
# validation


@lru_cache(maxsize=2048)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _type_matches(value: Any, expected: str) -> bool:
    if expected == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return _type_name(value) == expected


def validate(obj: JsonObject, schema: JsonObject) -> list[FieldError]:
    """All schema violations of a custom resource (metadata is validated elsewhere)."""
    errors: list[FieldError] = []
    properties = schema.get("properties", {})
    for key, value in obj.items():
        if key in _TOP_LEVEL:
            continue
        sub = properties.get(key)
        if sub is not None:
            _validate(value, sub, key, errors)
    for key in schema.get("required", []):
        if key not in obj:
            errors.append(required_value(key))
    return errors


def _validate(value: Any, schema: JsonObject, path: str, errors: list[FieldError]) -> None:
    if value is None:
        if not schema.get("nullable") and "type" in schema:
            errors.append(_type_error(path, value, schema["type"]))
        return
    int_or_string = isinstance(value, str) or _type_matches(value, "integer")
    if schema.get("x-kubernetes-int-or-string") and not int_or_string:
        errors.append(_type_error(path, value, "integer-or-string"))
        return
    expected = schema.get("type")
    if expected and not _type_matches(value, expected):
        errors.append(_type_error(path, value, expected))
        return
    before = len(errors)
    _validate_value_rules(value, schema, path, errors)
    for sub in schema.get("allOf", []):
        _validate(value, sub, path, errors)
    if "anyOf" in schema and len(errors) == before:
        _validate_any_of(value, schema["anyOf"], path, errors)
    if "oneOf" in schema and len(errors) == before:
        _validate_one_of(value, schema["oneOf"], path, errors)
    if "not" in schema and len(errors) == before:
        probe: list[FieldError] = []
        _validate(value, schema["not"], path, probe)
        if not probe:
            errors.append(FieldError(path, "FieldValueInvalid",
                                     f"Invalid value: {_quote(value)}: {path} in body "
                                     f"should not validate the schema"))
    if isinstance(value, dict):
        _validate_object(value, schema, path, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, path, errors)


def _validate_any_of(value: Any, options: list[JsonObject], path: str,
                     errors: list[FieldError]) -> None:
    first: list[FieldError] | None = None
    for option in options:
        probe: list[FieldError] = []
        _validate(value, option, path, probe)
        if not probe:
            return
        if first is None:
            first = probe
    errors.extend(first or [])


def _validate_one_of(value: Any, options: list[JsonObject], path: str,
                     errors: list[FieldError]) -> None:
    matches = 0
    first: list[FieldError] | None = None
    for option in options:
        probe: list[FieldError] = []
        _validate(value, option, path, probe)
        if not probe:
            matches += 1
        elif first is None:
            first = probe
    if matches == 1:
        return
    if matches == 0:
        errors.extend(first or [])
    else:
        errors.append(FieldError(path, "FieldValueInvalid",
                                 f"Invalid value: {_quote(value)}: {path} in body must validate "
                                 f"one and only one schema (oneOf)"))


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return '"' + _type_name(value) + '"'
    return json.dumps(value)


def _type_error(path: str, value: Any, expected: str) -> FieldError:
    actual = _type_name(value)
    return FieldError(
        path, "FieldValueTypeInvalid",
        f'Invalid value: "{actual}": {path} in body must be of type {expected}: "{actual}"',
    )


def _validate_value_rules(value: Any, schema: JsonObject, path: str,
                          errors: list[FieldError]) -> None:
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        errors.append(unsupported_value(path, value, list(enum)))
    if isinstance(value, str):
        _validate_string(value, schema, path, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, path, errors)


def _validate_string(value: str, schema: JsonObject, path: str,
                     errors: list[FieldError]) -> None:
    max_length = schema.get("maxLength")
    if max_length is not None and len(value) > max_length:
        errors.append(FieldError(path, "FieldValueTooLong",
                                 f"Too long: may not be more than {max_length} bytes"))
    min_length = schema.get("minLength")
    if min_length is not None and len(value) < min_length:
        errors.append(invalid_value(path, value,
                                    f"{path} in body should be at least {min_length} chars long"))
    pattern = schema.get("pattern")
    if pattern is not None and not _compile(pattern).search(value):
        errors.append(invalid_value(path, value, f"{path} in body should match '{pattern}'"))


def _validate_number(value: float, schema: JsonObject, path: str,
                     errors: list[FieldError]) -> None:
    minimum = schema.get("minimum")
    if minimum is not None:
        if schema.get("exclusiveMinimum") and value <= minimum:
            errors.append(invalid_value(path, value,
                                        f"{path} in body should be greater than {minimum}"))
        elif value < minimum:
            errors.append(invalid_value(
                path, value, f"{path} in body should be greater than or equal to {minimum}"))
    maximum = schema.get("maximum")
    if maximum is not None:
        if schema.get("exclusiveMaximum") and value >= maximum:
            errors.append(invalid_value(path, value,
                                        f"{path} in body should be less than {maximum}"))
        elif value > maximum:
            errors.append(invalid_value(
                path, value, f"{path} in body should be less than or equal to {maximum}"))
    multiple = schema.get("multipleOf")
    if multiple and value % multiple:
        errors.append(invalid_value(path, value,
                                    f"{path} in body should be a multiple of {multiple}"))


def _validate_object(value: JsonObject, schema: JsonObject, path: str,
                     errors: list[FieldError]) -> None:
    for key in schema.get("required", []):
        if key not in value:
            errors.append(required_value(join(path, key)))
    max_properties = schema.get("maxProperties")
    if max_properties is not None and len(value) > max_properties:
        errors.append(FieldError(path, "FieldValueTooMany",
                                 f"Too many: {len(value)}: must have at most {max_properties} "
                                 f"items"))
    min_properties = schema.get("minProperties")
    if min_properties is not None and len(value) < min_properties:
        errors.append(invalid_value(path, len(value),
                                    f"{path} in body should have at least {min_properties} "
                                    f"properties"))
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, child in value.items():
        sub = properties.get(key)
        if sub is None and isinstance(additional, dict):
            sub = additional
        if sub is not None:
            _validate(child, sub, join(path, key), errors)


def _validate_array(value: list[Any], schema: JsonObject, path: str,
                    errors: list[FieldError]) -> None:
    max_items = schema.get("maxItems")
    if max_items is not None and len(value) > max_items:
        errors.append(FieldError(path, "FieldValueTooMany",
                                 f"Too many: {len(value)}: must have at most {max_items} items"))
    min_items = schema.get("minItems")
    if min_items is not None and len(value) < min_items:
        errors.append(invalid_value(path, len(value),
                                    f"{path} in body should have at least {min_items} items"))
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _validate(item, items, f"{path}[{index}]", errors)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                errors.append(duplicate(f"{path}[{index}]", item))
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen_keys: set[str] = set()
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            identity = {k: item.get(k) for k in keys if k in item}
            token = json.dumps(identity, sort_keys=True)
            if token in seen_keys:
                errors.append(duplicate(f"{path}[{index}]", identity))
            seen_keys.add(token)


# ---------------------------------------------------------------------------------------------
# shapes for server-side apply


class SchemaShape(Shape):
    """A `Shape` read lazily from a structural schema node (CRD schemas can be megabytes)."""

    def __init__(self, schema: JsonObject) -> None:
        super().__init__()
        self._schema = schema
        self._children: dict[str, Shape] = {}
        self._item: Shape | None = None
        schema_type = schema.get("type")
        if schema.get("x-kubernetes-int-or-string"):
            self.kind = "scalar"
        elif schema_type == "array":
            self.kind = "list"
            self.list_type = schema.get("x-kubernetes-list-type", "atomic")
            self.map_keys = tuple(schema.get("x-kubernetes-list-map-keys", ()))
            items = schema.get("items", {})
            if isinstance(items, dict):
                self.key_defaults = {
                    key: items.get("properties", {}).get(key, {}).get("default")
                    for key in self.map_keys
                    if "default" in items.get("properties", {}).get(key, {})
                }
        elif schema_type == "object" or "properties" in schema:
            has_properties = "properties" in schema
            self.kind = "object" if has_properties else "map"
            if not has_properties and "additionalProperties" not in schema:
                self.kind = "object"
            self.atomic = schema.get("x-kubernetes-map-type") == "atomic"
            self.closed = has_properties and not _preserves_unknown(schema)
        elif schema_type:
            self.kind = "scalar"
        else:
            self.kind = "any"

    def child(self, name: str) -> Shape:
        cached = self._children.get(name)
        if cached is not None:
            return cached
        sub = (self._schema.get("properties") or {}).get(name)
        if sub is None:
            additional = self._schema.get("additionalProperties")
            sub = additional if isinstance(additional, dict) else None
        if sub is None:
            if self._schema.get("x-kubernetes-embedded-resource") and name == "metadata":
                return OBJECT_META
            return Shape()
        shape: Shape = SchemaShape(sub)
        self._children[name] = shape
        return shape

    def item(self) -> Shape:
        if self._item is None:
            items = self._schema.get("items")
            self._item = SchemaShape(items) if isinstance(items, dict) else Shape()
        return self._item


def resource_shape(schema: JsonObject) -> Shape:
    """The shape of a whole custom resource of this schema."""
    shape = SchemaShape(schema)
    shape.kind = "object"
    shape._children["metadata"] = OBJECT_META
    shape._children["apiVersion"] = SCALAR
    shape._children["kind"] = SCALAR
    return shape
