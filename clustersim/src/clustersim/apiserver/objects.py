"""The REST semantics of every object write and read, independent of HTTP.

`ObjectService` turns a create, update, patch, apply or delete into the new stored object:
metadata bookkeeping (uid, resourceVersion, generation, managedFields), the status subresource
split, defaulting and admission (built-in rules, CRD schemas, the LWS webhook), optimistic
concurrency, finalizers and graceful deletion. Controllers that run inside the server (garbage
collector, namespace and CRD lifecycle) listen to its changes.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import yaml

from clustersim import lws_pods
from clustersim.apiserver import builtin_rules, crds, lws_webhook, names, quantities, structural
from clustersim.apiserver.clock import rfc3339, utc_now
from clustersim.apiserver.errors import (
    STALE_OBJECT,
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    forbidden_request,
    invalid,
    invalid_value,
    not_found,
    unknown_field,
    unsupported_media_type,
)
from clustersim.apiserver.ipam import ServiceAddresses
from clustersim.apiserver.jsonpath import first
from clustersim.apiserver.kinds import ResourceType
from clustersim.apiserver.managed import record_update, server_side_apply
from clustersim.apiserver.patch import json_patch, merge_patch, strategic_merge_patch
from clustersim.apiserver.registry import TypeRegistry
from clustersim.apiserver.selectors import (
    FieldSelector,
    LabelSelector,
    matcher,
)
from clustersim.apiserver.shapes import Shape
from clustersim.apiserver.storage import Storage, name_of, namespace_of
from clustersim.yamlload import load_yaml_or_json

JsonObject = dict[str, Any]

APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
SERVER_OWNED_METADATA = ("uid", "creationTimestamp", "deletionTimestamp",
                         "deletionGracePeriodSeconds", "generation", "selfLink")
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


@dataclass
class WriteOptions:
    """Query options of a write request, plus the warnings the request collects."""

    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"
    force: bool | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class DeleteOptions:
    propagation_policy: str | None = None
    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    dry_run: bool = False


@dataclass
class ListResult:
    items: list[JsonObject]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


Listener = Callable[[ResourceType, JsonObject | None, JsonObject | None], None]


def _copy(obj: Any) -> Any:
    # a JSON round trip is faster than deepcopy for plain JSON data
    return json.loads(json.dumps(obj))


class ObjectService:
    """Reads and writes of API objects with the real server's semantics."""

    def __init__(self, storage: Storage, types: TypeRegistry, addresses: ServiceAddresses,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.storage = storage
        self.types = types
        self.addresses = addresses
        self.clock = clock
        self.listeners: list[Listener] = []

    def now(self) -> str:
        return rfc3339(self.clock())

    # ------------------------------------------------------------------------------------------
    # reads

    def _key_namespace(self, resource: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if resource.namespaced else ""

    def stored(self, resource: ResourceType, namespace: str | None, name: str) -> JsonObject:
        obj = self.storage.get(resource.storage_key, self._key_namespace(resource, namespace),
                               name)
        if obj is None:
            raise not_found(resource.group, resource.plural, name)
        return obj

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> JsonObject:
        return resource.present(self.stored(resource, namespace, name))

    def list_objects(self, resource: ResourceType, namespace: str | None,
                     labels: LabelSelector,
                     fields: FieldSelector, limit: int | None = None,
                     continue_token: str | None = None) -> ListResult:
        scope = namespace if resource.namespaced and namespace else None
        objects = self.storage.list_objects(resource.storage_key, scope)
        resource_version = str(self.storage.resource_version)
        start = ""
        if continue_token:
            try:
                token = json.loads(base64.b64decode(continue_token))
                start = str(token["start"])
                resource_version = str(token["rv"])
            except (ValueError, KeyError, TypeError) as error:
                raise bad_request(f"continue key is not valid: {error}") from error
        selected = matcher(labels, fields)
        shown = [resource.present(o) for o in objects]
        matched = [o for o in shown if selected(o) and (not start or _list_key(o) > start)]
        if limit and len(matched) > limit:
            page = matched[:limit]
            token_body = {"v": "meta.k8s.io/v1", "rv": int(resource_version),
                          "start": _list_key(page[-1])}
            next_token = base64.b64encode(json.dumps(token_body).encode()).decode()
            return ListResult(page, resource_version, next_token, len(matched) - limit)
        return ListResult(matched, resource_version)

    # ------------------------------------------------------------------------------------------
    # incoming objects

    def _incoming(self, resource: ResourceType, body: Any, namespace: str | None,
                  name: str | None = None, private: bool = False) -> JsonObject:
        """The request's object, checked; copied unless `private` says nothing else holds any
        part of it (a merge patch applied to a fresh copy of the live object)."""
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request could not be decoded as a "
                              f"{resource.kind}")
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if kind and kind != resource.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                              f"({resource.kind})")
        if api_version and api_version != resource.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the "
                              f"expected API version ({resource.api_version})")
        obj = body if private else _copy(body)
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        metadata = obj.get("metadata")
        if metadata is None:
            metadata = obj["metadata"] = {}
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        if resource.namespaced:
            body_namespace = metadata.get("namespace")
            if body_namespace and namespace and body_namespace != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            if namespace:
                metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if name is not None:
            if metadata.get("name") and metadata["name"] != name:
                raise bad_request(f"the name of the object ({metadata['name']}) does not match "
                                  f"the name on the URL ({name})")
            metadata["name"] = name
        return resource.store_form(obj)

    def _check_namespace(self, resource: ResourceType, obj: JsonObject) -> None:
        if not resource.namespaced:
            return
        namespace = namespace_of(obj)
        if not namespace:
            raise bad_request("the server could not find the requested resource: namespace is "
                              "required for a namespaced resource")
        found = self.storage.get(("", "namespaces"), "", namespace)
        if found is None:
            raise not_found("", "namespaces", namespace)
        if found["metadata"].get("deletionTimestamp"):
            raise forbidden_request(
                resource.group, resource.plural, name_of(obj),
                f"unable to create new content in namespace {namespace} because it is being "
                f"terminated")

    # ------------------------------------------------------------------------------------------
    # admission

    def _handle_unknown_fields(self, resource: ResourceType, obj: JsonObject,
                               options: WriteOptions) -> None:
        if resource.schema is not None:
            unknown = structural.prune(obj, resource.schema)
        else:
            unknown = _prune_closed(obj, resource.shape, "")
        if not unknown:
            return
        if options.field_validation == "Strict":
            if resource.is_custom:
                raise invalid(resource.group, resource.kind, name_of(obj),
                              [unknown_field(path) for path in unknown])
            listing = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise bad_request(f"{resource.kind} in version \"{resource.version}\" cannot be "
                              f"handled as a {resource.kind}: strict decoding error: {listing}")
        if options.field_validation != "Ignore":
            options.warnings.extend(f'unknown field "{path}"' for path in unknown)

    def _admit(self, resource: ResourceType, obj: JsonObject, old: JsonObject | None,
               options: WriteOptions) -> None:
        """Prune, default, mutate and validate `obj` in place (raises 422 when invalid)."""
        creating = old is None
        self._handle_unknown_fields(resource, obj, options)
        if resource.is_custom:
            if resource.schema is not None:
                structural.apply_defaults(obj, resource.schema)
            if lws_webhook.applies_to(resource.group, resource.kind):
                lws_webhook.default(obj)
        else:
            quantities.normalize(resource.kind, resource.version, obj)
            builtin_rules.default_object(resource.kind, obj, creating)
            if resource.kind == "CustomResourceDefinition":
                crds.default_crd(obj)
            if creating and resource.kind == "Pod" and self._lws_installed():
                # the LWS pod webhook (mutating, CREATE only), whoever creates the pod
                lws_pods.mutate_lws_pod(obj)
        errors: list[FieldError] = []
        if resource.is_custom:
            errors.extend(builtin_rules.validate_metadata(obj, resource.kind,
                                                          names.dns1123_subdomain))
            if resource.schema is not None:
                errors.extend(structural.validate(obj, resource.schema))
            if lws_webhook.applies_to(resource.group, resource.kind):
                errors.extend(lws_webhook.validate(obj, old))
        else:
            errors.extend(builtin_rules.validate_metadata(obj, resource.kind))
            errors.extend(builtin_rules.validate_object(resource.kind, obj, old))
            if resource.kind == "CustomResourceDefinition":
                errors.extend(crds.validate_crd(obj, old))
            if resource.kind == "Service":
                errors.extend(self._assign_service_addresses(obj, old))
        if old is not None:
            errors.extend(_finalizer_errors(obj, old))
        if errors:
            raise invalid(resource.group, resource.kind, name_of(obj), _unique(errors))
        if creating and resource.kind == "Pod" and not resource.is_custom:
            self._check_service_account(obj)

    def _lws_installed(self) -> bool:
        """Whether LeaderWorkerSet is served, as its webhook exists only where LWS is."""
        return self.types.any_version(lws_webhook.GROUP, lws_webhook.KIND) is not None

    def _check_service_account(self, pod: JsonObject) -> None:
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        namespace = namespace_of(pod)
        if self.storage.get(("", "serviceaccounts"), namespace, account) is None:
            raise forbidden_request("", "pods", name_of(pod),
                                    f"error looking up service account {namespace}/{account}: "
                                    f'serviceaccount "{account}" not found')

    def _assign_service_addresses(self, service: JsonObject,
                                  old: JsonObject | None) -> list[FieldError]:
        spec = service.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        if old is not None:
            # values the server allocated stay when a client leaves them out
            for key in ("clusterIP", "clusterIPs"):
                if not spec.get(key) and old_spec.get(key):
                    spec[key] = old_spec[key]
            old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort")
                         for p in old_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                previous = old_ports.get((port.get("port"), port.get("protocol")))
                if previous and not port.get("nodePort") and spec.get("type") in (
                        "NodePort", "LoadBalancer"):
                    port["nodePort"] = previous
        errors: list[FieldError] = []
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return errors
        requested = spec.get("clusterIP")
        if not requested:
            allocated = self.addresses.next_ip()
            if allocated is None:
                errors.append(FieldError("spec.clusterIPs", "FieldValueInvalid",
                                         "failed to allocate a cluster IP: range is full"))
                return errors
            spec["clusterIP"] = allocated
        elif requested != "None" and requested != old_spec.get("clusterIP"):
            if not self.addresses.in_range(requested):
                errors.append(invalid_value(
                    "spec.clusterIPs", f'[]string{{"{requested}"}}',
                    f"failed to allocate IP {requested}: provided IP is not in the valid range. "
                    f"The range of valid IPs is 127.200.0.0/16"))
            elif self.addresses.is_allocated(requested):
                errors.append(invalid_value(
                    "spec.clusterIPs", f'[]string{{"{requested}"}}',
                    f"failed to allocate IP {requested}: provided IP is already allocated"))
        spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            taken = {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
            for port in spec.get("ports") or []:
                if not port.get("nodePort"):
                    allocated_port = self.addresses.next_port(taken)
                    if allocated_port is not None:
                        port["nodePort"] = allocated_port
                        taken.add(allocated_port)
        return errors

    # ------------------------------------------------------------------------------------------
    # create

    def create(self, resource: ResourceType, namespace: str | None, body: Any,
               options: WriteOptions) -> JsonObject:
        obj = self._incoming(resource, body, namespace)
        if obj["metadata"].get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        return self._create(resource, obj, options, precomputed_fields=False)

    def _create(self, resource: ResourceType, obj: JsonObject, options: WriteOptions,
                precomputed_fields: bool) -> JsonObject:
        metadata = obj["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = str(metadata["generateName"]) + "".join(
                secrets.choice(GENERATE_NAME_ALPHABET) for _ in range(5))
        self._check_namespace(resource, obj)
        now = self.now()
        for key in SERVER_OWNED_METADATA:
            metadata.pop(key, None)
        metadata.pop("resourceVersion", None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now
        if resource.tracks_generation:
            metadata["generation"] = 1
        if resource.has_status and not resource.status_on_create:
            if resource.is_custom:
                obj.pop("status", None)
            else:
                obj["status"] = builtin_rules.initial_status(resource.kind, obj)
        if resource.kind == "CustomResourceDefinition" and not resource.is_custom:
            finalizers = metadata.setdefault("finalizers", [])
            if CRD_CLEANUP not in finalizers:
                finalizers.append(CRD_CLEANUP)
        self._admit(resource, obj, None, options)
        key_namespace = self._key_namespace(resource, namespace_of(obj))
        if self.storage.get(resource.storage_key, key_namespace, name_of(obj)) is not None:
            raise already_exists(resource.group, resource.plural, name_of(obj))
        if not precomputed_fields:
            record_update(None, obj, options.field_manager, resource.api_version, "",
                          resource.shape, now)
        if options.dry_run:
            return resource.present(obj)
        self._reserve_addresses(resource, obj)
        stored = self.storage.put(resource.storage_key, obj)
        self._notify(resource, None, stored)
        return resource.present(stored)

    def _reserve_addresses(self, resource: ResourceType, obj: JsonObject) -> None:
        if resource.kind != "Service" or resource.is_custom:
            return
        spec = obj.get("spec") or {}
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            self.addresses.reserve_ip(spec["clusterIP"])
        for port in spec.get("ports") or []:
            if port.get("nodePort"):
                self.addresses.reserve_port(int(port["nodePort"]))

    def _notify(self, resource: ResourceType, old: JsonObject | None,
                new: JsonObject | None) -> None:
        for listener in self.listeners:
            listener(resource, old, new)

    # ------------------------------------------------------------------------------------------
    # update

    def update(self, resource: ResourceType, namespace: str | None, name: str, body: Any,
               options: WriteOptions, subresource: str = "") -> JsonObject:
        current = self.stored(resource, namespace, name)
        obj = self._incoming(resource, body, namespace, name)
        requested_version = obj["metadata"].get("resourceVersion")
        if requested_version and requested_version != current["metadata"]["resourceVersion"]:
            raise conflict(resource.group, resource.plural, name, STALE_OBJECT)
        new = self._split_status(resource, current, obj, subresource)
        return self._update(resource, current, new, options, subresource, False)

    def _split_status(self, resource: ResourceType, current: JsonObject, new: JsonObject,
                      subresource: str) -> JsonObject:
        """A write to the main resource keeps the old status; a write to /status keeps all
        but the status."""
        if subresource == "status":
            result: JsonObject = _copy(current)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            if "managedFields" in new.get("metadata", {}):
                result["metadata"]["managedFields"] = new["metadata"]["managedFields"]
            return result
        if resource.has_status:
            if "status" in current:
                new["status"] = _copy(current["status"])
            else:
                new.pop("status", None)
        return new

    def _update(self, resource: ResourceType, current: JsonObject, new: JsonObject,
                options: WriteOptions, subresource: str, precomputed_fields: bool) -> JsonObject:
        metadata = new.setdefault("metadata", {})
        old_metadata = current["metadata"]
        for key in (*SERVER_OWNED_METADATA, "name", "namespace"):
            if key in old_metadata:
                metadata[key] = old_metadata[key]
            else:
                metadata.pop(key, None)
        metadata["resourceVersion"] = old_metadata["resourceVersion"]
        if not resource.namespaced:
            metadata.pop("namespace", None)
        if "managedFields" not in metadata and "managedFields" in old_metadata:
            metadata["managedFields"] = old_metadata["managedFields"]
        self._admit(resource, new, current, options)
        if resource.tracks_generation and _spec_changed(resource, current, new):
            metadata["generation"] = int(old_metadata.get("generation") or 0) + 1
        if not precomputed_fields:
            record_update(current, new, options.field_manager, resource.api_version,
                          subresource, resource.shape, self.now())
        if new == current:
            return resource.present(current)
        if options.dry_run:
            return resource.present(new)
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers") and \
                not metadata.get("deletionGracePeriodSeconds") and \
                not _namespace_finalizers(resource, new):
            return resource.present(self._remove(resource, new))
        self._reserve_addresses(resource, new)
        stored = self.storage.put(resource.storage_key, new)
        self._notify(resource, current, stored)
        return resource.present(stored)

    def write_internal(self, resource: ResourceType, current: JsonObject, new: JsonObject,
                       manager: str, subresource: str = "") -> JsonObject:
        """A write made by a controller inside the server (bypasses optimistic concurrency).

        `new` may share nested dicts with `current` (controllers build it as a shallow copy);
        it is copied first so admission and field bookkeeping never touch the stored version.
        """
        options = WriteOptions(field_manager=manager, field_validation="Ignore")
        return self._update(resource, current, _copy(new), options, subresource, False)

    # ------------------------------------------------------------------------------------------
    # patch and apply

    def patch(self, resource: ResourceType, namespace: str | None, name: str,
              content_type: str, raw: bytes, options: WriteOptions,
              subresource: str = "") -> tuple[JsonObject, int]:
        if content_type == APPLY_PATCH:
            return self._apply(resource, namespace, name, raw, options, subresource)
        if options.force is not None:
            raise invalid(resource.group, resource.kind, name,
                          [forbidden("force", "may not be specified for non-apply patch")])
        if content_type == STRATEGIC_PATCH and resource.is_custom:
            raise unsupported_media_type(content_type, [JSON_PATCH, MERGE_PATCH, APPLY_PATCH])
        if content_type not in PATCH_TYPES:
            raise unsupported_media_type(content_type, list(PATCH_TYPES))
        try:
            document = json.loads(raw or b"null")
        except ValueError as error:
            raise bad_request(f"error decoding patch: {error}") from error
        current = self.stored(resource, namespace, name)
        live = _copy(resource.present(current))
        if content_type == JSON_PATCH:
            patched = json_patch(live, document)
        elif content_type == MERGE_PATCH:
            patched = merge_patch(live, document)
        else:
            patched = strategic_merge_patch(live, document, resource.shape)
        # a JSON patch's copy and move can make two places share one dict: only those copy
        obj = self._incoming(resource, patched, namespace, name,
                             private=content_type != JSON_PATCH)
        requested_version = obj["metadata"].get("resourceVersion")
        if requested_version and requested_version != current["metadata"]["resourceVersion"]:
            raise conflict(resource.group, resource.plural, name, STALE_OBJECT)
        new = self._split_status(resource, current, obj, subresource)
        return self._update(resource, current, new, options, subresource, False), 200

    def _apply(self, resource: ResourceType, namespace: str | None, name: str, raw: bytes,
               options: WriteOptions, subresource: str) -> tuple[JsonObject, int]:
        if not options.field_manager:
            raise bad_request("PATCH /apply: fieldManager: Required value: is required for "
                              "apply patch")
        try:
            applied = load_yaml_or_json(raw)
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise bad_request(f"error decoding YAML: {error}") from error
        if not isinstance(applied, dict):
            raise bad_request("apply patch must be an object")
        applied = _copy(applied)
        for field_name in ("apiVersion", "kind"):
            if not applied.get(field_name):
                raise bad_request(f"{field_name} must be set in an apply patch")
        if applied["kind"] != resource.kind or applied["apiVersion"] != resource.api_version:
            raise bad_request(f"the {'kind' if applied['kind'] != resource.kind else 'API version'}"
                              f" in the data does not match the expected {resource.api_version}, "
                              f"Kind={resource.kind}")
        metadata = applied.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        if metadata.get("managedFields"):
            raise bad_request("metadata.managedFields must be nil")
        if metadata.get("name") and metadata["name"] != name:
            raise bad_request(f"the name of the object ({metadata['name']}) does not match the "
                              f"name on the URL ({name})")
        metadata["name"] = name
        if resource.namespaced and namespace:
            if metadata.get("namespace") and metadata["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            metadata["namespace"] = namespace
        elif not resource.namespaced:
            metadata.pop("namespace", None)
        applied = _applied_part(resource, applied, subresource)
        self._check_applied_fields(resource, applied, options)
        if not resource.is_custom:
            # compared with live values (conflicts, no-op applies) in their canonical form
            quantities.normalize(resource.kind, resource.version, applied)
        current = self.storage.get(resource.storage_key, self._key_namespace(resource, namespace),
                                   name)
        now = self.now()
        if current is None:
            if subresource:
                raise not_found(resource.group, resource.plural, name)
            merged = server_side_apply(None, applied, options.field_manager,
                                       resource.api_version, "", bool(options.force),
                                       resource.shape, now)
            obj = self._incoming(resource, merged, namespace, name)
            return self._create(resource, obj, options, precomputed_fields=True), 201
        requested_version = applied["metadata"].get("resourceVersion")
        if requested_version and requested_version != current["metadata"]["resourceVersion"]:
            raise conflict(resource.group, resource.plural, name, STALE_OBJECT)
        live = _copy(resource.present(current))
        merged = server_side_apply(live, applied, options.field_manager, resource.api_version,
                                   subresource, bool(options.force), resource.shape, now)
        obj = self._incoming(resource, merged, namespace, name)
        new = self._split_status(resource, current, obj, subresource)
        return self._update(resource, current, new, options, subresource, True), 200

    def _check_applied_fields(self, resource: ResourceType, applied: JsonObject,
                              options: WriteOptions) -> None:
        probe = _copy(applied)
        self._handle_unknown_fields(resource, probe, options)
        applied.clear()
        applied.update(probe)

    # ------------------------------------------------------------------------------------------
    # delete

    def delete(self, resource: ResourceType, namespace: str | None, name: str,
               options: DeleteOptions) -> tuple[JsonObject, bool]:
        """Delete (or start deleting) an object; returns the answer and whether it is gone."""
        current = self.stored(resource, namespace, name)
        metadata = current["metadata"]
        if options.precondition_uid and options.precondition_uid != metadata.get("uid"):
            raise conflict(resource.group, resource.plural, name,
                           f"Precondition failed: UID in precondition: {options.precondition_uid}"
                           f", UID in object meta: {metadata.get('uid')}")
        if options.precondition_resource_version and \
                options.precondition_resource_version != metadata.get("resourceVersion"):
            raise conflict(resource.group, resource.plural, name,
                           f"Precondition failed: ResourceVersion in precondition: "
                           f"{options.precondition_resource_version}, ResourceVersion in object "
                           f"meta: {metadata.get('resourceVersion')}")
        if resource.kind == "Namespace" and not resource.is_custom and \
                name in PROTECTED_NAMESPACES:
            raise forbidden_request("", "namespaces", name, "this namespace may not be deleted")
        finalizers = list(metadata.get("finalizers") or [])
        policy = options.propagation_policy
        if policy == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if policy == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
        grace = self._grace_period(resource, current, options)
        terminating = bool(metadata.get("deletionTimestamp"))
        if not finalizers and grace == 0 and not _namespace_finalizers(resource, current):
            if options.dry_run:
                return self._deleted_answer(resource, current), True
            final = self._remove(resource, current)
            return self._deleted_answer(resource, final), True
        new = _copy(current)
        new_metadata = new["metadata"]
        new_metadata["finalizers"] = finalizers
        if not finalizers:
            new_metadata.pop("finalizers")
        moment = self.clock() + timedelta(seconds=grace)
        if not terminating or (grace and grace < int(metadata.get(
                "deletionGracePeriodSeconds") or 0)):
            new_metadata["deletionTimestamp"] = rfc3339(moment)
            new_metadata["deletionGracePeriodSeconds"] = grace
            if resource.tracks_generation and not terminating:
                new_metadata["generation"] = int(new_metadata.get("generation") or 0) + 1
        if resource.kind == "Namespace" and not resource.is_custom:
            new.setdefault("status", {})["phase"] = "Terminating"
        if new == current or options.dry_run:
            return resource.present(new), False
        stored = self.storage.put(resource.storage_key, new)
        self._notify(resource, current, stored)
        return resource.present(stored), False

    def _grace_period(self, resource: ResourceType, current: JsonObject,
                      options: DeleteOptions) -> int:
        if resource.kind != "Pod" or resource.is_custom:
            return 0
        spec = current.get("spec") or {}
        status = current.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if options.grace_period_seconds is not None:
            return max(int(options.grace_period_seconds), 0)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    def _deleted_answer(self, resource: ResourceType, final: JsonObject) -> JsonObject:
        if resource.is_custom or resource.kind == "Pod":
            return resource.present(final)
        details: JsonObject = {"name": name_of(final)}
        if resource.group:
            details["group"] = resource.group
        details["kind"] = resource.plural
        details["uid"] = final["metadata"].get("uid", "")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    def _remove(self, resource: ResourceType, current: JsonObject) -> JsonObject:
        final = self.storage.remove(resource.storage_key,
                                    self._key_namespace(resource, namespace_of(current)),
                                    name_of(current))
        if final is None:
            return current
        if resource.kind == "Service" and not resource.is_custom:
            spec = current.get("spec") or {}
            if spec.get("clusterIP") and spec["clusterIP"] != "None":
                self.addresses.release_ip(spec["clusterIP"])
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    self.addresses.release_port(int(port["nodePort"]))
        self._notify(resource, current, None)
        return final

    def remove_now(self, resource: ResourceType, current: JsonObject) -> JsonObject:
        """Remove an object immediately, ignoring finalizers (controllers inside the server)."""
        return self._remove(resource, current)

    def delete_collection(self, resource: ResourceType, namespace: str | None,
                          labels: LabelSelector, fields: FieldSelector,
                          options: DeleteOptions) -> list[JsonObject]:
        found = self.list_objects(resource, namespace, labels, fields).items
        deleted = []
        for obj in found:
            try:
                answer, _ = self.delete(resource, namespace_of(obj) or namespace, name_of(obj),
                                        options)
            except ApiError as error:
                if error.code == 404:
                    continue
                raise
            deleted.append(answer)
        return deleted

    # ------------------------------------------------------------------------------------------
    # scale and binding

    def get_scale(self, resource: ResourceType, namespace: str | None, name: str) -> JsonObject:
        obj = self.get(resource, namespace, name)
        return _scale_of(resource, obj)

    def update_scale(self, resource: ResourceType, namespace: str | None, name: str,
                     scale: Any, options: WriteOptions) -> JsonObject:
        if not isinstance(scale, dict):
            raise bad_request("the body of the request could not be decoded as a Scale")
        current = self.stored(resource, namespace, name)
        requested_version = (scale.get("metadata") or {}).get("resourceVersion")
        if requested_version and requested_version != current["metadata"]["resourceVersion"]:
            raise conflict(resource.group, resource.plural, name, STALE_OBJECT)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid("autoscaling", "Scale", name,
                          [invalid_value("spec.replicas", replicas,
                                         "must be greater than or equal to 0")])
        new = _copy(current)
        _set_path(new, resource.scale.spec_replicas if resource.scale else ".spec.replicas",
                  replicas)
        updated = self._update(resource, current, new, options, "scale", False)
        return _scale_of(resource, updated)

    def patch_scale(self, resource: ResourceType, namespace: str | None, name: str,
                    content_type: str, raw: bytes, options: WriteOptions) -> JsonObject:
        scale = self.get_scale(resource, namespace, name)
        try:
            document = json.loads(raw or b"null")
        except ValueError as error:
            raise bad_request(f"error decoding patch: {error}") from error
        if content_type == JSON_PATCH:
            patched = json_patch(scale, document)
        elif content_type in (MERGE_PATCH, STRATEGIC_PATCH):
            patched = merge_patch(scale, document)
        else:
            raise unsupported_media_type(content_type, [JSON_PATCH, MERGE_PATCH,
                                                        STRATEGIC_PATCH])
        return self.update_scale(resource, namespace, name, patched, options)

    def bind(self, pods: ResourceType, namespace: str, name: str, binding: Any) -> JsonObject:
        """The pods/binding subresource: how a scheduler assigns a pod to a node."""
        if not isinstance(binding, dict) or not (binding.get("target") or {}).get("name"):
            raise invalid("", "Binding", name, [FieldError("target.name", "FieldValueRequired",
                                                           "Required value")])
        node = str(binding["target"]["name"])
        current = self.stored(pods, namespace, name)
        assigned = (current.get("spec") or {}).get("nodeName")
        if assigned:
            raise conflict("", "pods/binding", name,
                           f"pod {name} is already assigned to node \"{assigned}\"")
        if current["metadata"].get("deletionTimestamp"):
            raise conflict("", "pods/binding", name, f"pod {name} is being deleted, cannot be "
                                                     f"assigned to a host")
        new = _copy(current)
        new["spec"]["nodeName"] = node
        annotations = (binding.get("metadata") or {}).get("annotations")
        if annotations:
            new["metadata"].setdefault("annotations", {}).update(annotations)
        status = new.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": self.now()})
        status["conditions"] = conditions
        stored = self.storage.put(pods.storage_key, new)
        self._notify(pods, current, stored)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}


# ---------------------------------------------------------------------------------------------
# helpers


def _list_key(obj: JsonObject) -> str:
    return f"{namespace_of(obj)}/{name_of(obj)}"


def _unique(errors: list[FieldError]) -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    result = []
    for error in errors:
        if (error.field, error.message) not in seen:
            seen.add((error.field, error.message))
            result.append(error)
    return result


def _prune_closed(obj: JsonObject, shape: Shape, path: str) -> list[str]:
    """Drop fields a closed built-in shape does not know; return their paths."""
    unknown: list[str] = []
    if shape.kind != "object" or not shape.closed:
        return unknown
    for key in list(obj):
        child_path = f"{path}.{key}" if path else key
        if key not in shape.fields:
            unknown.append(child_path)
            del obj[key]
            continue
        child_shape = shape.fields[key]
        if isinstance(obj[key], dict) and child_shape.closed:
            unknown.extend(_prune_closed(obj[key], child_shape, child_path))
    return unknown


def _spec_changed(resource: ResourceType, old: JsonObject, new: JsonObject) -> bool:
    ignored = {"metadata", "status"} if resource.has_status or not resource.is_custom \
        else {"metadata"}
    keys = (set(old) | set(new)) - ignored
    return any(old.get(k) != new.get(k) for k in keys)


def _namespace_finalizers(resource: ResourceType, obj: JsonObject) -> bool:
    if resource.kind != "Namespace" or resource.is_custom:
        return False
    return bool((obj.get("spec") or {}).get("finalizers"))


def _finalizer_errors(new: JsonObject, old: JsonObject) -> list[FieldError]:
    if not old["metadata"].get("deletionTimestamp"):
        return []
    added = [f for f in new["metadata"].get("finalizers") or []
             if f not in (old["metadata"].get("finalizers") or [])]
    if not added:
        return []
    listing = "[]string{" + ", ".join(f'"{f}"' for f in added) + "}"
    return [forbidden("metadata.finalizers",
                      f"no new finalizers can be added if the object is being deleted, found "
                      f"new finalizers {listing}")]


def _applied_part(resource: ResourceType, applied: JsonObject, subresource: str) -> JsonObject:
    """The part of an applied configuration a (sub)resource takes: status or all but status."""
    if subresource == "status":
        kept: JsonObject = {k: applied[k] for k in ("apiVersion", "kind", "status")
                            if k in applied}
        kept["metadata"] = {k: v for k, v in applied["metadata"].items()
                            if k in ("name", "namespace")}
        return kept
    if resource.has_status:
        applied.pop("status", None)
    return applied


def _set_path(obj: JsonObject, dotted: str, value: Any) -> None:
    parts = [p for p in dotted.split(".") if p]
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def selector_string(selector: Any) -> str:
    """A metav1.LabelSelector in its string form (`a=b,c in (d,e)`)."""
    if not isinstance(selector, dict):
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key = expression.get("key")
        operator = expression.get("operator")
        values = ",".join(sorted(expression.get("values") or []))
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _scale_of(resource: ResourceType, obj: JsonObject) -> JsonObject:
    paths = resource.scale
    spec_path = paths.spec_replicas if paths else ".spec.replicas"
    status_path = paths.status_replicas if paths else ".status.replicas"
    if resource.is_custom:
        selector = first(obj, paths.label_selector) if paths and paths.label_selector else None
    else:
        selector = selector_string((obj.get("spec") or {}).get("selector"))
    metadata = obj["metadata"]
    status: JsonObject = {"replicas": first(obj, status_path) or 0}
    if selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: metadata[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in metadata},
        "spec": {"replicas": first(obj, spec_path) or 0},
        "status": status,
    }

