"""Discovery documents: /api, /apis (legacy and aggregated v2), group and version lists."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from clustersim.apiserver.kinds import SUBRESOURCE_VERBS, ResourceType
from clustersim.apiserver.registry import TypeRegistry

JsonObject = dict[str, Any]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

_SUBRESOURCE_KINDS: dict[str, tuple[str, str, str]] = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}
_PROXY_KINDS = {"pods": "PodProxyOptions", "services": "ServiceProxyOptions",
                "nodes": "NodeProxyOptions"}


def _subresources(resource: ResourceType) -> list[str]:
    names = list(resource.subresources)
    if resource.kind == "Pod" and not resource.is_custom:
        names.append("binding")
    return sorted(names)


def _subresource_kind(resource: ResourceType, subresource: str) -> tuple[str, str, str]:
    if subresource in _SUBRESOURCE_KINDS:
        return _SUBRESOURCE_KINDS[subresource]
    if subresource == "proxy":
        return "", "v1", _PROXY_KINDS.get(resource.plural, "ProxyOptions")
    return resource.group, resource.version, resource.kind


def _subresource_verbs(subresource: str) -> list[str]:
    if subresource == "binding":
        return ["create"]
    return list(SUBRESOURCE_VERBS.get(subresource, ("get",)))


def storage_version_hash(resource: ResourceType) -> str:
    digest = hashlib.sha256(
        f"{resource.group}/{resource.storage_version}/{resource.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def resource_list(types: TypeRegistry, group: str, version: str) -> JsonObject | None:
    """The APIResourceList of one group version (None when it is not served)."""
    served = types.in_group_version(group, version)
    if not served:
        return None
    resources: list[JsonObject] = []
    for resource in sorted(served, key=lambda t: t.plural):
        entry: JsonObject = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(resource.verbs),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entry["storageVersionHash"] = storage_version_hash(resource)
        resources.append(entry)
        for subresource in _subresources(resource):
            sub_group, sub_version, sub_kind = _subresource_kind(resource, subresource)
            sub_entry: JsonObject = {
                "name": f"{resource.plural}/{subresource}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": sub_kind,
                "verbs": _subresource_verbs(subresource),
            }
            if (sub_group, sub_version) != (resource.group, resource.version) and \
                    subresource in _SUBRESOURCE_KINDS:
                sub_entry["group"] = sub_group
                sub_entry["version"] = sub_version
            resources.append(sub_entry)
    group_version = f"{group}/{version}" if group else version
    body: JsonObject = {"kind": "APIResourceList", "groupVersion": group_version,
                        "resources": resources}
    if group:
        body["apiVersion"] = "v1"
    return body


def _group_entry(group: str, versions: list[str]) -> JsonObject:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_versions(server_address: str) -> JsonObject:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def group_list(types: TypeRegistry) -> JsonObject:
    groups = [_group_entry(g, v) for g, v in types.groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(types: TypeRegistry, group: str) -> JsonObject | None:
    for name, versions in types.groups():
        if name == group and group:
            body = _group_entry(group, versions)
            body.update({"kind": "APIGroup", "apiVersion": "v1"})
            return body
    return None


def _aggregated_resource(resource: ResourceType) -> JsonObject:
    entry: JsonObject = {
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": resource.version,
                         "kind": resource.kind},
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    subresources = []
    for subresource in _subresources(resource):
        sub_group, sub_version, sub_kind = _subresource_kind(resource, subresource)
        subresources.append({
            "subresource": subresource,
            "responseKind": {"group": sub_group, "version": sub_version, "kind": sub_kind},
            "verbs": _subresource_verbs(subresource),
        })
    if subresources:
        entry["subresources"] = subresources
    return entry


def aggregated(types: TypeRegistry, legacy: bool, beta: bool = False) -> JsonObject:
    """The aggregated discovery document of /api (legacy) or /apis."""
    items = []
    for group, versions in types.groups():
        if (group == "") != legacy:
            continue
        version_entries = []
        for version in versions:
            served = sorted(types.in_group_version(group, version), key=lambda t: t.plural)
            version_entries.append({
                "version": version,
                "resources": [_aggregated_resource(t) for t in served],
                "freshness": "Current",
            })
        metadata: JsonObject = {"creationTimestamp": None}
        if group:
            metadata["name"] = group
        items.append({"metadata": metadata, "versions": version_entries})
    version = "v2beta1" if beta else "v2"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def etag(body: JsonObject) -> str:
    return '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'
