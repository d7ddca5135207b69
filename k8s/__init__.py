"""Kubernetes plumbing: the client, watches, object writes, readiness, pod-failure diagnosis,
capacity planning, quantities, snapshots of applied configuration, and the serving gateway as
reached through the API server.

Where it sits: below activities/ (which turn what happens here into Temporal results and
errors) and the CLI's `plan`; above spec/ and manifests/. Nothing here knows of Temporal, and
workflows never import it (workflow code stays deterministic). What other packages use is
re-exported here; the modules hold the rest.
"""

from k8s.client import ApiUnavailable, KubeClient, KubeConfigError, KubeError, UnknownKind
from k8s.gateway import Gateway
from k8s.objects import (
    OWNED_KINDS,
    ObjectRefused,
    apply_all,
    delete_refs,
    list_owned,
    owned_selector,
    refusal,
)
from k8s.podfailures import PodFailure, PodFailureCheck
from k8s.watching import Collection, Informer, LogFollower, Wakeup

__all__ = [
    "OWNED_KINDS",
    "ApiUnavailable",
    "Collection",
    "Gateway",
    "Informer",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "LogFollower",
    "ObjectRefused",
    "PodFailure",
    "PodFailureCheck",
    "UnknownKind",
    "Wakeup",
    "apply_all",
    "delete_refs",
    "list_owned",
    "owned_selector",
    "refusal",
]
