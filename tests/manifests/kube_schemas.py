"""Checks of rendered objects against real schemas: CRD openAPIV3Schemas and the Kubernetes models.

Two questions for every object: does the API server accept it (types, required fields, enums,
patterns: jsonschema over the CRD's schema), and does it keep every field we wrote (a structural
CRD schema prunes undeclared fields; a built-in kind drops what its Go type does not have). For
built-in kinds the `kubernetes` client's models answer both: deserialize, serialize back, compare.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes.client import ApiClient

# The built-in kinds the model service and the demo charts render, and the model of each.
BUILTIN_MODELS: dict[tuple[str, str], str] = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("v1", "Namespace"): "V1Namespace",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
}


# The upstream LWS CRD is 16,000 lines: libyaml reads it in a fraction of pure Python's time.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class CrdVersion:
    crd: str
    schema: dict[str, Any]


def load_crds(paths: Iterable[Path]) -> list[dict[str, Any]]:
    crds: list[dict[str, Any]] = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for document in yaml.load_all(text, Loader=_LOADER):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                crds.append(document)
    return crds


def served_schemas(crds: Iterable[dict[str, Any]]) -> dict[tuple[str, str], CrdVersion]:
    """`(apiVersion, kind)` -> the schema of that served version."""
    schemas: dict[tuple[str, str], CrdVersion] = {}
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schema = version["schema"]["openAPIV3Schema"]
                schemas[key] = CrdVersion(crd["metadata"]["name"], schema)
    return schemas


def crd_problems(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every reason the API server would reject `obj` or prune part of it (CEL rules aside)."""
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]
    # ObjectMeta is validated by the API server itself and never pruned by a CRD schema.
    body = {key: value for key, value in obj.items() if key != "metadata"}
    problems += [f"{path}: pruned (not in the schema)" for path in _undeclared(body, schema, "")]
    return problems


def _undeclared(obj: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
    found: list[str] = []
    for key, item in obj.items():
        where = f"{path}.{key}" if path else key
        if key in properties:
            found += _walk(item, properties[key], where)
        elif isinstance(additional, dict):
            found += _walk(item, additional, where)
        elif not keeps_unknown:
            found.append(where)
    return found


def _walk(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if isinstance(value, dict):
        return _undeclared(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        found: list[str] = []
        for index, item in enumerate(value):
            found += _walk(item, schema["items"], f"{path}[{index}]")
        return found
    return []


def model_round_trip(obj: dict[str, Any], model: str) -> dict[str, Any]:
    """`obj` deserialized into a `kubernetes` client model and serialized back."""
    with ApiClient() as client:
        typed = client.deserialize(json.dumps(obj), model, "application/json")
        result: dict[str, Any] = client.sanitize_for_serialization(typed)
    return result


def model_problems(obj: dict[str, Any], model: str) -> list[str]:
    """Fields the Kubernetes type drops or retypes: empty when the object is a faithful instance."""
    try:
        back = model_round_trip(obj, model)
    except (ValueError, TypeError) as error:
        return [f"not a valid {model}: {error}"]
    return _differences(obj, back, "")


def _differences(wrote: Any, kept: Any, path: str) -> list[str]:
    if isinstance(wrote, dict) and isinstance(kept, dict):
        found: list[str] = []
        for key in wrote.keys() | kept.keys():
            if key not in kept:
                found.append(f"{path}.{key}: dropped")
            elif key not in wrote:
                found.append(f"{path}.{key}: added")
            else:
                found += _differences(wrote[key], kept[key], f"{path}.{key}")
        return found
    if isinstance(wrote, list) and isinstance(kept, list) and len(wrote) == len(kept):
        found = []
        for index, (a, b) in enumerate(zip(wrote, kept, strict=True)):
            found += _differences(a, b, f"{path}[{index}]")
        return found
    if type(wrote) is not type(kept) or wrote != kept:
        return [f"{path}: wrote {wrote!r}, the model keeps {kept!r}"]
    return []
