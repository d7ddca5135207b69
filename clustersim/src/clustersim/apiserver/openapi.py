"""OpenAPI v3 documents: an index and one document per group version.

kubectl and helm read them to learn that the server validates fields itself (the PATCH
operations accept `fieldValidation`), so they skip client-side validation. Schemas of custom
resources are their CRDs' schemas; built-in kinds get an open schema with typed metadata.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from clustersim.apiserver.kinds import ResourceType
from clustersim.apiserver.registry import TypeRegistry

JsonObject = dict[str, Any]

OBJECT_META_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
STATUS_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"

_WRITE_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation")


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(resource: ResourceType) -> str:
    if resource.group:
        reversed_group = ".".join(reversed(resource.group.split(".")))
        if not resource.is_custom:
            reversed_group = f"io.k8s.api.{resource.group.split('.')[0]}"
        return f"{reversed_group}.{resource.version}.{resource.kind}"
    return f"io.k8s.api.core.{resource.version}.{resource.kind}"


def _gvk(resource: ResourceType) -> JsonObject:
    return {"group": resource.group, "kind": resource.kind, "version": resource.version}


def _query(name: str, kind: str = "string") -> JsonObject:
    return {"name": name, "in": "query", "schema": {"type": kind, "uniqueItems": True}}


def _operation(resource: ResourceType, action: str, ref: str, parameters: list[JsonObject],
               body: bool, subresource: str = "") -> JsonObject:
    media = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
    operation: JsonObject = {
        "operationId": f"{action}{resource.kind}{subresource.capitalize()}",
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": media}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource),
    }
    if body:
        content_types = ["application/json"]
        if action == "patch":
            # Strategic merge patch is served but not advertised: kubectl's client-side apply
            # would then read merge keys from these (open) schemas; unadvertised, it uses the
            # patch metadata compiled into kubectl, which knows every built-in field.
            content_types = ["application/apply-patch+yaml", "application/json-patch+json",
                             "application/merge-patch+json"]
        operation["requestBody"] = {
            "content": {t: {"schema": {"$ref": f"#/components/schemas/{ref}"}}
                        for t in content_types},
            "required": True,
        }
    return operation


def _paths(resource: ResourceType) -> dict[str, JsonObject]:
    base = "/" + gv_path(resource.group, resource.version)
    scope = f"{base}/namespaces/{{namespace}}" if resource.namespaced else base
    ref = _schema_name(resource)
    list_ref = ref + "List"
    path_params = [{"name": "name", "in": "path", "required": True,
                    "schema": {"type": "string", "uniqueItems": True}}]
    if resource.namespaced:
        path_params.append({"name": "namespace", "in": "path", "required": True,
                            "schema": {"type": "string", "uniqueItems": True}})
    writes = [_query(p) for p in _WRITE_PARAMETERS]
    patch_parameters = [*writes, _query("force", "boolean")]
    listing = [_query(p) for p in ("labelSelector", "fieldSelector", "continue",
                                   "resourceVersion")] + [_query("limit", "integer"),
                                                           _query("watch", "boolean")]
    collection: JsonObject = {
        "get": _operation(resource, "list", list_ref, listing, False),
        "post": _operation(resource, "post", ref, writes, True),
        "delete": _operation(resource, "deletecollection", STATUS_REF, listing, False),
    }
    item: JsonObject = {
        "get": _operation(resource, "get", ref, [], False),
        "put": _operation(resource, "put", ref, writes, True),
        "patch": _operation(resource, "patch", ref, patch_parameters, True),
        "delete": _operation(resource, "delete", STATUS_REF, [_query("dryRun")], False),
        "parameters": path_params,
    }
    paths = {f"{scope}/{resource.plural}": collection,
             f"{scope}/{resource.plural}/{{name}}": item}
    for subresource in resource.subresources:
        if subresource not in ("status", "scale"):
            continue
        sub_ref = "io.k8s.api.autoscaling.v1.Scale" if subresource == "scale" else ref
        paths[f"{scope}/{resource.plural}/{{name}}/{subresource}"] = {
            "get": _operation(resource, "get", sub_ref, [], False, subresource),
            "put": _operation(resource, "put", sub_ref, writes, True, subresource),
            "patch": _operation(resource, "patch", sub_ref, patch_parameters, True, subresource),
            "parameters": path_params,
        }
    return paths


def _object_schema(resource: ResourceType) -> JsonObject:
    if resource.schema is not None:
        schema: JsonObject = json.loads(json.dumps(resource.schema))
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"type": "string"}
        properties["kind"] = {"type": "string"}
        properties["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META_REF}"}]}
        schema["type"] = "object"
    else:
        schema = {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META_REF}"}]},
            },
            "x-kubernetes-preserve-unknown-fields": True,
        }
    schema["x-kubernetes-group-version-kind"] = [_gvk(resource)]
    return schema


def _list_schema(resource: ResourceType, ref: str) -> JsonObject:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}},
            "metadata": {"allOf": [{"$ref": f"#/components/schemas/{LIST_META_REF}"}]},
        },
        "x-kubernetes-group-version-kind": [{"group": resource.group,
                                              "kind": resource.kind + "List",
                                              "version": resource.version}],
    }


_META_SCHEMAS: dict[str, JsonObject] = {
    OBJECT_META_REF: {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "generateName": {"type": "string"},
            "namespace": {"type": "string"}, "uid": {"type": "string"},
            "resourceVersion": {"type": "string"}, "generation": {"type": "integer"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"},
                           "x-kubernetes-list-type": "set"},
            "ownerReferences": {"type": "array", "items": {"type": "object"},
                                "x-kubernetes-list-type": "map",
                                "x-kubernetes-list-map-keys": ["uid"]},
            "managedFields": {"type": "array", "items": {"type": "object"}},
        },
    },
    LIST_META_REF: {"type": "object", "properties": {
        "continue": {"type": "string"}, "remainingItemCount": {"type": "integer"},
        "resourceVersion": {"type": "string"}}},
    STATUS_REF: {"type": "object", "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"},
        "reason": {"type": "string"}, "status": {"type": "string"},
        "details": {"type": "object"}},
        "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]},
    "io.k8s.api.autoscaling.v1.Scale": {"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
        "metadata": {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META_REF}"}]},
        "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                                                     "selector": {"type": "string"}}}},
        "x-kubernetes-group-version-kind": [{"group": "autoscaling", "kind": "Scale",
                                              "version": "v1"}]},
}


def group_version_document(types: TypeRegistry, group: str, version: str,
                           server_version: str) -> JsonObject | None:
    served = types.in_group_version(group, version)
    if not served:
        return None
    paths: dict[str, JsonObject] = {}
    schemas: dict[str, JsonObject] = dict(_META_SCHEMAS)
    for resource in sorted(served, key=lambda t: t.plural):
        paths.update(_paths(resource))
        ref = _schema_name(resource)
        schemas[ref] = _object_schema(resource)
        schemas[ref + "List"] = _list_schema(resource, ref)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def index(types: TypeRegistry, hashes: dict[str, str]) -> JsonObject:
    """The /openapi/v3 index; `hashes` maps a group-version path to its document hash."""
    paths: dict[str, JsonObject] = {}
    for group, versions in types.groups():
        for version in versions:
            path = gv_path(group, version)
            suffix = f"?hash={hashes[path]}" if path in hashes else ""
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}{suffix}"}
    return {"paths": paths}


def document_hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest()[:128].upper()


# -- OpenAPI v2 ---------------------------------------------------------------------------------
# kubectl falls back to the v2 document to validate kinds the server does not serve (so that
# an unknown kind is reported as "no matches for kind", not as a validation failure). It asks
# for gnostic's protobuf encoding; an empty document (no definitions) lets it skip validation.

V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def v2_document(server_version: str) -> JsonObject:
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": server_version},
            "paths": {}, "definitions": {}}


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    key = (field_number << 3) | 2
    size = len(payload)
    varint = b""
    while True:
        byte = size & 0x7F
        size >>= 7
        if size:
            varint += bytes([byte | 0x80])
        else:
            varint += bytes([byte])
            break
    return bytes([key]) + varint + payload


def v2_protobuf(server_version: str) -> bytes:
    """gnostic `openapi_v2.Document{swagger: "2.0", info: {title, version}}`."""
    info = _length_delimited(1, b"Kubernetes") + _length_delimited(2, server_version.encode())
    return _length_delimited(1, b"2.0") + _length_delimited(2, info)
