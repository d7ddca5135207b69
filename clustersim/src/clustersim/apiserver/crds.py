"""CustomResourceDefinitions: their defaults, validation, status, and the types they serve."""

from __future__ import annotations

from typing import Any

from clustersim.apiserver import names
from clustersim.apiserver.errors import FieldError, invalid_value, required_value
from clustersim.apiserver.kinds import ResourceType, ScalePaths
from clustersim.apiserver.structural import resource_shape

JsonObject = dict[str, Any]


def default_crd(crd: JsonObject) -> None:
    spec = crd.setdefault("spec", {})
    crd_names = spec.setdefault("names", {})
    kind = str(crd_names.get("kind") or "")
    crd_names.setdefault("singular", kind.lower())
    crd_names.setdefault("listKind", kind + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or []:
        if isinstance(version, dict):
            version.setdefault("served", True)
            version.setdefault("storage", False)


def validate_crd(crd: JsonObject, old: JsonObject | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = crd.get("spec") or {}
    crd_names = spec.get("names") or {}
    group = str(spec.get("group") or "")
    plural = str(crd_names.get("plural") or "")
    if not group:
        errors.append(required_value("spec.group"))
    if not plural:
        errors.append(required_value("spec.names.plural"))
    if not crd_names.get("kind"):
        errors.append(required_value("spec.names.kind"))
    name = str(crd.get("metadata", {}).get("name") or "")
    if group and plural and name != f"{plural}.{group}":
        errors.append(invalid_value("metadata.name", name,
                                    'must be spec.names.plural+"."+spec.group'))
    if plural:
        errors.extend(names.field_errors("spec.names.plural", plural, names.dns1123_label(plural)))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(FieldError("spec.scope", "FieldValueNotSupported",
                                 f'Unsupported value: "{spec.get("scope")}": supported values: '
                                 f'"Cluster", "Namespaced"'))
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    if not versions:
        errors.append(required_value("spec.versions", "must have exactly one version marked as "
                                                      "storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(invalid_value("spec.versions", "[]",
                                    "must have exactly one version marked as storage version"))
    if old is not None and (old.get("spec") or {}).get("scope") != spec.get("scope"):
        errors.append(invalid_value("spec.scope", spec.get("scope"), "field is immutable"))
    return errors


def crd_status(crd: JsonObject, now: str, previous: JsonObject | None) -> JsonObject:
    """The status the CRD controllers would settle on: names accepted and established."""
    spec = crd.get("spec") or {}
    old_status = (previous or {}).get("status") or {}
    stored = list(old_status.get("storedVersions") or [])
    for version in spec.get("versions") or []:
        if version.get("storage") and version.get("name") not in stored:
            stored.append(version["name"])
    old_conditions = {c.get("type"): c for c in old_status.get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> JsonObject:
        existing = old_conditions.get(kind)
        if existing and existing.get("status") == "True":
            return dict(existing)
        return {"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason,
                "message": message}

    return {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been "
                                                              "accepted"),
        ],
        "acceptedNames": dict(spec.get("names") or {}),
        "storedVersions": stored,
    }


def served_types(crd: JsonObject) -> list[ResourceType]:
    """One ResourceType per served version of a CRD."""
    spec = crd.get("spec") or {}
    crd_names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    storage = next((v["name"] for v in versions if v.get("storage")), None)
    if storage is None:
        return []
    result = []
    for version in versions:
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"}
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        result.append(ResourceType(
            group=str(spec.get("group")),
            version=str(version["name"]),
            kind=str(crd_names.get("kind")),
            plural=str(crd_names.get("plural")),
            singular=str(crd_names.get("singular") or str(crd_names.get("kind")).lower()),
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(crd_names.get("shortNames") or ()),
            categories=tuple(crd_names.get("categories") or ()),
            subresources=tuple(sorted(k for k in ("scale", "status") if k in subresources)),
            storage_version=str(storage),
            shape=resource_shape(schema),
            tracks_generation=True,
            scale=ScalePaths(
                spec_replicas=str(scale.get("specReplicasPath", ".spec.replicas")),
                status_replicas=str(scale.get("statusReplicasPath", ".status.replicas")),
                label_selector=scale.get("labelSelectorPath"),
            ) if isinstance(scale, dict) else None,
            crd_name=str(crd.get("metadata", {}).get("name")),
            schema=schema,
            printer_columns=list(version.get("additionalPrinterColumns") or []),
        ))
    return result
