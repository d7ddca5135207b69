"""The resource types the server serves: built-in kinds and the kinds CRDs add.

A `ResourceType` is one served (group, version, plural). Several served versions of one kind
share a storage key; an object is stored once, in its storage version, and read in any.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clustersim.apiserver.shapes import Shape, builtin_shape

JsonObject = dict[str, Any]

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update",
                  "watch")
SUBRESOURCE_VERBS: dict[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "log": ("get",),
    "proxy": ("create", "delete", "get", "patch", "update"),
    "finalize": ("update",),
    "token": ("create",),
}
# kinds that are only ever created, answered at once and never stored (access reviews)
CREATE_ONLY = ("create",)


@dataclass(frozen=True)
class ScalePaths:
    """Where a kind keeps the numbers that its /scale subresource reads and writes."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None


@dataclass
class ResourceType:
    """One served group/version/resource and everything the server must know to serve it."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    storage_version: str = ""
    shape: Shape = field(default_factory=Shape)
    tracks_generation: bool = False
    status_on_create: bool = False
    scale: ScalePaths | None = None
    verbs: tuple[str, ...] = STANDARD_VERBS
    # custom resources only
    crd_name: str | None = None
    schema: JsonObject | None = None
    printer_columns: list[JsonObject] = field(default_factory=list)
    # kinds stored under another type's key (events.k8s.io Events live with core Events)
    storage_plural: str | None = None
    storage_group: str | None = None
    to_storage: Callable[[JsonObject], JsonObject] | None = None
    from_storage: Callable[[JsonObject], JsonObject] | None = None

    def __post_init__(self) -> None:
        if not self.storage_version:
            self.storage_version = self.version

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_api_version(self) -> str:
        return f"{self.group}/{self.storage_version}" if self.group else self.storage_version

    @property
    def storage_key(self) -> tuple[str, str]:
        group = self.storage_group if self.storage_group is not None else self.group
        return group, self.storage_plural or self.plural

    @property
    def create_only(self) -> bool:
        """An access review or similar: answered on create, never stored."""
        return self.verbs == CREATE_ONLY

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def is_custom(self) -> bool:
        return self.crd_name is not None

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def present(self, stored: JsonObject) -> JsonObject:
        """The stored object as this served version shows it (never mutates `stored`)."""
        if self.from_storage is not None:
            return self.from_storage(stored)
        if stored.get("apiVersion") == self.api_version:
            return stored
        shown = dict(stored)
        shown["apiVersion"] = self.api_version
        return shown

    def store_form(self, obj: JsonObject) -> JsonObject:
        """An incoming object in the storage version (mutates and returns `obj`)."""
        if self.to_storage is not None:
            return self.to_storage(obj)
        obj["apiVersion"] = self.storage_api_version
        return obj


_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting the preferred version first, as Kubernetes orders versions."""
    match = _VERSION_RE.match(version)
    if match is None:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {"alpha": 2, "beta": 1, None: 0}[match.group(2)]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)


def _builtin(group: str, version: str, kind: str, plural: str, namespaced: bool,
             short_names: tuple[str, ...] = (), categories: tuple[str, ...] = (),
             subresources: tuple[str, ...] = (), tracks_generation: bool = False,
             status_on_create: bool = False, scale: ScalePaths | None = None) -> ResourceType:
    return ResourceType(
        group=group, version=version, kind=kind, plural=plural, singular=kind.lower(),
        namespaced=namespaced, short_names=short_names, categories=categories,
        subresources=subresources, shape=builtin_shape(kind),
        tracks_generation=tracks_generation, status_on_create=status_on_create, scale=scale,
    )


def _events_v1_from_core(stored: JsonObject) -> JsonObject:
    shown: JsonObject = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                         "metadata": stored.get("metadata", {})}
    renames = {
        "involvedObject": "regarding", "message": "note", "source": "deprecatedSource",
        "firstTimestamp": "deprecatedFirstTimestamp", "lastTimestamp": "deprecatedLastTimestamp",
        "count": "deprecatedCount", "reportingComponent": "reportingController",
    }
    for key, value in stored.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        shown[renames.get(key, key)] = value
    return shown


def _events_v1_to_core(obj: JsonObject) -> JsonObject:
    renames = {
        "regarding": "involvedObject", "note": "message", "deprecatedSource": "source",
        "deprecatedFirstTimestamp": "firstTimestamp", "deprecatedLastTimestamp": "lastTimestamp",
        "deprecatedCount": "count", "reportingController": "reportingComponent",
    }
    stored: JsonObject = {"apiVersion": "v1", "kind": "Event"}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        stored[renames.get(key, key)] = value
    return stored


def builtin_types() -> list[ResourceType]:
    """Every built-in kind the stack touches, in discovery order."""
    workload_scale = ScalePaths(label_selector=".status.selector")
    # admission sees objects in their storage form: events.k8s.io Events are core Events
    events_v1 = _builtin("events.k8s.io", "v1", "Event", "events", True, ("ev",))
    events_v1.storage_group = ""
    events_v1.storage_version = "v1"
    events_v1.to_storage = _events_v1_to_core
    events_v1.from_storage = _events_v1_from_core
    return [
        _builtin("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
        _builtin("", "v1", "Endpoints", "endpoints", True, ("ep",)),
        _builtin("", "v1", "Event", "events", True, ("ev",)),
        _builtin("", "v1", "Namespace", "namespaces", False, ("ns",),
                 subresources=("finalize", "status"), status_on_create=True),
        _builtin("", "v1", "Node", "nodes", False, ("no",), subresources=("proxy", "status"),
                 status_on_create=True),
        _builtin("", "v1", "Pod", "pods", True, ("po",), ("all",),
                 subresources=("log", "proxy", "status"), tracks_generation=True),
        _builtin("", "v1", "Secret", "secrets", True),
        _builtin("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",),
                 subresources=("token",)),
        _builtin("", "v1", "Service", "services", True, ("svc",), ("all",),
                 subresources=("proxy", "status")),
        _builtin("apps", "v1", "ControllerRevision", "controllerrevisions", True),
        _builtin("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("all",),
                 subresources=("scale", "status"), tracks_generation=True,
                 scale=workload_scale),
        _builtin("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("all",),
                 subresources=("scale", "status"), tracks_generation=True,
                 scale=workload_scale),
        _builtin("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), ("all",),
                 subresources=("scale", "status"), tracks_generation=True,
                 scale=workload_scale),
        events_v1,
        _builtin("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding",
                 "clusterrolebindings", False),
        _builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
        _builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
        _builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
        _builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
                 "customresourcedefinitions", False, ("crd", "crds"), ("api-extensions",),
                 subresources=("status",), tracks_generation=True),
        _builtin("coordination.k8s.io", "v1", "Lease", "leases", True),
        _builtin("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
        *_reviews(),
    ]


def _reviews() -> list[ResourceType]:
    kinds = [("authorization.k8s.io", "LocalSubjectAccessReview", True),
             ("authorization.k8s.io", "SelfSubjectAccessReview", False),
             ("authorization.k8s.io", "SelfSubjectRulesReview", False),
             ("authorization.k8s.io", "SubjectAccessReview", False),
             ("authentication.k8s.io", "SelfSubjectReview", False),
             ("authentication.k8s.io", "TokenReview", False)]
    reviews = []
    for group, kind, namespaced in kinds:
        review = _builtin(group, "v1", kind, kind.lower() + "s", namespaced)
        review.verbs = CREATE_ONLY
        reviews.append(review)
    return reviews
