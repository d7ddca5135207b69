"""RBAC authorization: who may do what, from the stored Roles, ClusterRoles and their bindings.

Every authenticated request is described by `Attributes` (user, verb, API group, resource,
subresource, namespace, name, or a non-resource path) and checked by `RbacAuthorizer.allows`
before it is served, as kube-apiserver's `--authorization-mode=RBAC` does. The `system:masters`
group is allowed everything without consulting RBAC (the default admin token is in it). The
rule semantics are rbac.authorization.k8s.io/v1's: `*` wildcards for verbs, groups and
resources, `resource/subresource` and `*/subresource` names, resourceNames, nonResourceURLs with
a trailing `*`, subjects of kind User, Group and ServiceAccount, RoleBindings that grant a Role
or a ClusterRole inside one namespace, and aggregated ClusterRoles (their rules are the union of
the ClusterRoles their `aggregationRule` selects, computed when evaluated).

`forbidden` builds the real 403 Status: `pods "x" is forbidden: User "u" cannot get resource
"pods/log" in API group "" in the namespace "ns"`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clustersim.apiserver.errors import ApiError, qualified_resource
from clustersim.apiserver.selectors import label_selector_from_object, matches_labels
from clustersim.apiserver.storage import Storage

JsonObject = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"
CLUSTER_ROLES = (RBAC_GROUP, "clusterroles")
CLUSTER_ROLE_BINDINGS = (RBAC_GROUP, "clusterrolebindings")
ROLES = (RBAC_GROUP, "roles")
ROLE_BINDINGS = (RBAC_GROUP, "rolebindings")
MASTERS_GROUP = "system:masters"
AUTHENTICATED_GROUP = "system:authenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity: user name, uid and groups (system:authenticated included)."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    def describe(self) -> JsonObject:
        info: JsonObject = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = self.extra
        return info


@dataclass(frozen=True)
class Attributes:
    """One request as the authorizer sees it."""

    user: UserInfo
    verb: str
    resource_request: bool = True
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


def _matches(values: Iterable[str], wanted: str) -> bool:
    return any(v == "*" or v == wanted for v in values)


def _resource_matches(resources: Iterable[str], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for entry in resources:
        if entry == "*" or entry == combined:
            return True
        # "*/scale" grants the scale subresource of any resource
        if subresource and entry == f"*/{subresource}":
            return True
    return False


def _path_matches(urls: Iterable[str], path: str) -> bool:
    for url in urls:
        if url == "*" or url == path:
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: JsonObject, attributes: Attributes) -> bool:
    """Whether one PolicyRule grants the request."""
    verbs = rule.get("verbs") or []
    if not _matches(verbs, attributes.verb):
        return False
    if not attributes.resource_request:
        return _path_matches(rule.get("nonResourceURLs") or [], attributes.path)
    if not _matches(rule.get("apiGroups") or [], attributes.group):
        return False
    if not _resource_matches(rule.get("resources") or [], attributes.resource,
                             attributes.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or attributes.name in names


def subject_matches(subject: JsonObject, user: UserInfo, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = str(subject.get("name") or "")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = str(subject.get("namespace") or binding_namespace)
        return user.name == f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"
    return False


@dataclass(frozen=True)
class Grant:
    """The rules one binding gives a user, and how RBAC names that binding in its reasons."""

    source: str
    rules: list[JsonObject]


def _describe_subject(subject: JsonObject, namespace: str) -> str:
    name = str(subject.get("name") or "")
    if subject.get("kind") == "ServiceAccount":
        name += "/" + str(subject.get("namespace") or namespace)
    return f'{subject.get("kind")} "{name}"'


class RbacAuthorizer:
    """Evaluates requests against the RBAC objects in storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def allows(self, attributes: Attributes) -> bool:
        return self.decide(attributes)[0]

    def decide(self, attributes: Attributes) -> tuple[bool, str]:
        """(allowed, reason): the reason names the binding that allowed it, as RBAC does."""
        if MASTERS_GROUP in attributes.user.groups:
            return True, ""
        namespace = attributes.namespace if attributes.resource_request else ""
        for grant in self.grants(attributes.user, namespace):
            if any(rule_allows(rule, attributes) for rule in grant.rules):
                return True, f"RBAC: allowed by {grant.source}"
        return False, ""

    def rules_for(self, user: UserInfo, namespace: str) -> Iterator[JsonObject]:
        """Every rule granted to `user` that applies in `namespace` (cluster-wide ones too)."""
        for grant in self.grants(user, namespace):
            yield from grant.rules

    def grants(self, user: UserInfo, namespace: str) -> Iterator[Grant]:
        for binding in self.storage.list_objects(CLUSTER_ROLE_BINDINGS):
            subject = self._bound(binding, user, "")
            if subject is not None:
                yield Grant(self._source("ClusterRoleBinding", binding, "", subject),
                            self._role_rules(binding, ""))
        if not namespace:
            return
        for binding in self.storage.list_objects(ROLE_BINDINGS, namespace):
            subject = self._bound(binding, user, namespace)
            if subject is not None:
                yield Grant(self._source("RoleBinding", binding, namespace, subject),
                            self._role_rules(binding, namespace))

    @staticmethod
    def _source(kind: str, binding: JsonObject, namespace: str, subject: JsonObject) -> str:
        name = str((binding.get("metadata") or {}).get("name") or "")
        if namespace:
            name += "/" + namespace
        reference = binding.get("roleRef") or {}
        return (f'{kind} "{name}" of {reference.get("kind")} "{reference.get("name")}" to '
                f"{_describe_subject(subject, namespace)}")

    @staticmethod
    def _bound(binding: JsonObject, user: UserInfo, namespace: str) -> JsonObject | None:
        for subject in binding.get("subjects") or []:
            if subject_matches(subject, user, namespace):
                found: JsonObject = subject
                return found
        return None

    def _role_rules(self, binding: JsonObject, namespace: str) -> list[JsonObject]:
        reference = binding.get("roleRef") or {}
        name = str(reference.get("name") or "")
        if reference.get("kind") == "Role":
            role = self.storage.get(ROLES, namespace, name) if namespace else None
            return list((role or {}).get("rules") or [])
        cluster_role = self.storage.get(CLUSTER_ROLES, "", name)
        return self.cluster_role_rules(cluster_role) if cluster_role else []

    def cluster_role_rules(self, cluster_role: JsonObject, depth: int = 0) -> list[JsonObject]:
        """A ClusterRole's rules; an aggregated one gathers those of the roles it selects."""
        rules = list(cluster_role.get("rules") or [])
        aggregation = cluster_role.get("aggregationRule")
        if not aggregation or depth > 4:
            return rules
        own_name = (cluster_role.get("metadata") or {}).get("name")
        selectors = [label_selector_from_object(s)
                     for s in aggregation.get("clusterRoleSelectors") or []]
        for other in self.storage.list_objects(CLUSTER_ROLES):
            if (other.get("metadata") or {}).get("name") == own_name:
                continue
            if any(s is not None and matches_labels(s, other) for s in selectors):
                rules.extend(self.cluster_role_rules(other, depth + 1))
        return rules


def forbidden_message(attributes: Attributes) -> str:
    """The authorizer's sentence, as kube-apiserver's forbiddenMessage writes it."""
    user = attributes.user.name
    if not attributes.resource_request:
        return f'User "{user}" cannot {attributes.verb} path "{attributes.path}"'
    resource = attributes.resource
    if attributes.subresource:
        resource += "/" + attributes.subresource
    if attributes.namespace:
        return (f'User "{user}" cannot {attributes.verb} resource "{resource}" in API group '
                f'"{attributes.group}" in the namespace "{attributes.namespace}"')
    return (f'User "{user}" cannot {attributes.verb} resource "{resource}" in API group '
            f'"{attributes.group}" at the cluster scope')


def forbidden(attributes: Attributes) -> ApiError:
    """The 403 Status a denied request gets (apierrors.NewForbidden)."""
    reason = forbidden_message(attributes)
    if not attributes.resource_request:
        return ApiError(403, "Forbidden", f"forbidden: {reason}", {})
    qualified = qualified_resource(attributes.group, attributes.resource)
    if attributes.name:
        message = f'{qualified} "{attributes.name}" is forbidden: {reason}'
    else:
        message = f"{qualified} is forbidden: {reason}"
    details: JsonObject = {}
    if attributes.name:
        details["name"] = attributes.name
    if attributes.group:
        details["group"] = attributes.group
    details["kind"] = attributes.resource
    return ApiError(403, "Forbidden", message, details)
