"""Kubernetes `Status` errors raised anywhere in the API server and rendered by the HTTP layer.

Messages and reasons follow the real API server so that clients that parse them (kubectl,
helm, the kubernetes Python client) behave as they do against a real cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One `details.causes[]` entry: what is wrong with which field."""

    field: str
    reason: str
    message: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def invalid_value(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {_render_value(value)}: {detail}")


def required_value(path: str, detail: str = "") -> FieldError:
    message = "Required value" + (f": {detail}" if detail else "")
    return FieldError(path, "FieldValueRequired", message)


def unsupported_value(path: str, value: Any, allowed: list[Any]) -> FieldError:
    choices = ", ".join(_render_value(a) for a in allowed)
    return FieldError(
        path, "FieldValueNotSupported",
        f"Unsupported value: {_render_value(value)}: supported values: {choices}",
    )


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, "FieldValueForbidden", f"Forbidden: {detail}")


def too_long(path: str, limit: int) -> FieldError:
    return FieldError(
        path, "FieldValueTooLong", f"Too long: may not be more than {limit} bytes"
    )


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, "FieldValueDuplicate", f"Duplicate value: {_render_value(value)}")


def unknown_field(path: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f'unknown field "{path}"')


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_render_value(v)}" for k, v in value.items()) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_render_value(v) for v in value) + "]"
    return repr(value)


@dataclass
class ApiError(Exception):
    """An error answered to the client as a `meta.k8s.io` Status object."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified_resource(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified_resource(group, plural)} "{name}" not found',
        _details(name, group, plural),
    )


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{qualified_resource(group, plural)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(group: str, plural: str, name: str, detail: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(group, plural)} "{name}": {detail}',
        _details(name, group, plural),
    )


STALE_OBJECT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    qualified = f"{kind}.{group}" if group else kind
    if len(errors) == 1:
        summary = errors[0].describe()
    else:
        summary = "[" + ", ".join(e.describe() for e in errors) + "]"
    details = _details(name, group, kind)
    details["causes"] = [
        {"reason": e.reason, "message": e.message, "field": e.field} for e in errors
    ]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


def forbidden_request(group: str, plural: str, name: str, detail: str) -> ApiError:
    return ApiError(
        403, "Forbidden", f'{qualified_resource(group, plural)} "{name}" is forbidden: {detail}',
        _details(name, group, plural),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested "
                       "resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": content_type}]},
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def service_unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def internal_error(message: str) -> ApiError:
    return ApiError(
        500, "InternalError", f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": path}]})
