"""The ClusterRoles and ClusterRoleBindings every cluster starts with (kube-apiserver's RBAC
bootstrap policy, the parts the stack meets): `cluster-admin` for `system:masters`, discovery,
public info and self-reviews for every authenticated user, and the aggregated user-facing roles
`admin`, `edit` and `view` with the `system:aggregate-to-*` roles that feed them.

The aggregate-to rules are a subset of the real ones: the workload, networking, RBAC-free kinds
this server serves. Created at start when absent; an edited default is left as it is.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"

_VIEWABLE: list[tuple[str, list[str]]] = [
    ("", ["configmaps", "endpoints", "persistentvolumeclaims", "pods", "replicationcontrollers",
          "serviceaccounts", "services", "pods/log", "pods/status", "services/status",
          "events", "limitranges", "resourcequotas", "namespaces", "namespaces/status"]),
    ("apps", ["controllerrevisions", "daemonsets", "deployments", "deployments/scale",
              "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
              "statefulsets", "statefulsets/scale", "statefulsets/status"]),
    ("discovery.k8s.io", ["endpointslices"]),
    ("events.k8s.io", ["events"]),
    ("coordination.k8s.io", ["leases"]),
]
_EDITABLE: list[tuple[str, list[str]]] = [
    ("", ["configmaps", "endpoints", "persistentvolumeclaims", "pods", "replicationcontrollers",
          "secrets", "serviceaccounts", "services", "pods/proxy", "services/proxy",
          "serviceaccounts/token"]),
    ("apps", ["daemonsets", "deployments", "deployments/scale", "replicasets",
              "replicasets/scale", "statefulsets", "statefulsets/scale"]),
    ("discovery.k8s.io", ["endpointslices"]),
    ("coordination.k8s.io", ["leases"]),
]


def _rules(groups: list[tuple[str, list[str]]], verbs: list[str]) -> list[JsonObject]:
    return [{"apiGroups": [group], "resources": resources, "verbs": verbs}
            for group, resources in groups]


def _role(name: str, rules: list[JsonObject], labels: dict[str, str] | None = None,
          aggregate_from: str | None = None) -> JsonObject:
    role: JsonObject = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {**BOOTSTRAP_LABELS, **(labels or {})},
                     "annotations": dict(AUTOUPDATE)},
        "rules": rules,
    }
    if aggregate_from is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {AGGREGATE + aggregate_from: "true"}}]}
    return role


def _binding(name: str, role: str, groups: list[str]) -> JsonObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(BOOTSTRAP_LABELS),
                     "annotations": dict(AUTOUPDATE)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}
                     for g in groups],
    }


def cluster_roles() -> list[JsonObject]:
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                  {"nonResourceURLs": ["*"], "verbs": ["*"]}]
    discovery = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                 "/openapi/*", "/readyz", "/version", "/version/"]
    public = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
    self_reviews = [
        {"apiGroups": ["authorization.k8s.io"],
         "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
         "verbs": ["create"]},
    ]
    local_reviews = [{"apiGroups": ["authorization.k8s.io"],
                      "resources": ["localsubjectaccessreviews"], "verbs": ["create"]}]
    rbac_in_namespace = [{"apiGroups": ["rbac.authorization.k8s.io"],
                          "resources": ["rolebindings", "roles"], "verbs": READ + WRITE}]
    return [
        _role("cluster-admin", everything, {}),
        _role("system:discovery", [{"nonResourceURLs": discovery, "verbs": ["get"]}]),
        _role("system:public-info-viewer", [{"nonResourceURLs": public, "verbs": ["get"]}]),
        _role("system:basic-user", self_reviews),
        _role("admin", [], {}, "admin"),
        _role("edit", [], {AGGREGATE + "admin": "true"}, "edit"),
        _role("view", [], {AGGREGATE + "edit": "true"}, "view"),
        _role("system:aggregate-to-admin", local_reviews + rbac_in_namespace,
              {AGGREGATE + "admin": "true"}),
        _role("system:aggregate-to-edit", _rules(_EDITABLE, WRITE),
              {AGGREGATE + "edit": "true"}),
        _role("system:aggregate-to-view", _rules(_VIEWABLE, READ),
              {AGGREGATE + "view": "true"}),
    ]


def cluster_role_bindings() -> list[JsonObject]:
    return [
        _binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _binding("system:public-info-viewer", "system:public-info-viewer",
                 ["system:authenticated", "system:unauthenticated"]),
        _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
    ]
