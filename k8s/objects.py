"""Writing objects: server-side apply and delete with what each did, and a rollout's own objects.

Where it sits: under the Kubernetes activities (activities/kube.py) and the CLI's `plan`. Every
write is a server-side apply with field manager `llmd-rollout`; each object is read first and its
resourceVersion compared after, so an apply that changed nothing says "unchanged". A write the
API server refuses is an `ObjectRefused` naming the object; an API that keeps answering "try
again" stays `ApiUnavailable`, so the caller can tell "retry" from "fix this".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from k8s.client import ApiUnavailable, KubeClient, KubeError, UnknownKind
from spec.activity_io import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ROLLOUT_LABEL,
    ApplyResult,
    ObjectOutcome,
    ObjectRef,
)

# The kinds a rollout's model-service objects come in (manifests/render.py): what a snapshot,
# a restore and a delete-by-rollout look for under the ownership labels.
OWNED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"),
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceModel"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
)


class ObjectRefused(KubeError):
    """The API server refused to apply or delete one object: retrying cannot help."""

    def __init__(
        self, error: KubeError, ref: ObjectRef, verb: Literal["apply", "delete"], forced: bool
    ) -> None:
        super().__init__(error.status, error.message, error.body)
        self.ref = ref
        self.verb = verb
        self.forced = forced
        # The kind itself is unknown to the API server: its CRD is not installed.
        self.unknown_kind = isinstance(error, UnknownKind)

    @property
    def conflict_owners(self) -> list[str]:
        """The managers named in a server-side apply conflict ('conflict with "helm" ...')."""
        owners = []
        for cause in self.causes:
            message = str(cause.get("message", ""))
            if 'conflict with "' in message:
                owners.append(message.split('conflict with "', 1)[1].split('"', 1)[0])
        return list(dict.fromkeys(owners))


def refusal(
    error: KubeError, ref: ObjectRef, verb: Literal["apply", "delete"], forced: bool
) -> KubeError:
    """What a failed write of `ref` means: still "try again", or refused (naming the object)."""
    if isinstance(error, ApiUnavailable):
        return error
    return ObjectRefused(error, ref, verb, forced)


def owned_selector(rollout: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{ROLLOUT_LABEL}={rollout}"


def apply_all(
    client: KubeClient, objects: Iterable[Mapping[str, Any]], force: bool, namespace: str
) -> ApplyResult:
    """Server-side apply each object in order; what each apply did, by resourceVersion."""
    outcomes = []
    for original in objects:
        obj = dict(original)
        ref = ObjectRef.of(obj)
        try:
            if client.resource_of(ref).namespaced and not ref.namespace:
                obj["metadata"] = {**obj["metadata"], "namespace": namespace}
                ref = ObjectRef.of(obj)
            before = client.get(ref)
            after = client.apply(obj, force)
        except KubeError as error:
            raise refusal(error, ref, "apply", force) from None
        version = (after.get("metadata") or {}).get("resourceVersion")
        if before is None:
            action = "created"
        elif (before.get("metadata") or {}).get("resourceVersion") == version:
            action = "unchanged"
        else:
            action = "configured"
        outcomes.append(ObjectOutcome(ref=ref, action=action, resource_version=version))
    return ApplyResult(outcomes=outcomes)


def list_owned(client: KubeClient, namespace: str, rollout: str) -> list[dict[str, Any]]:
    """Every object the rollout owns in the namespace (kinds whose CRD is absent are skipped)."""
    found: list[dict[str, Any]] = []
    for api_version, kind in OWNED_KINDS:
        try:
            items, _ = client.list_objects(api_version, kind, namespace, owned_selector(rollout))
        except UnknownKind:
            continue
        found += items
    return found


def delete_refs(
    client: KubeClient, refs: Iterable[ObjectRef], propagation: str
) -> list[ObjectOutcome]:
    """Delete each object; "absent" when it (or its kind) was already gone."""
    outcomes = []
    for ref in refs:
        try:
            gone_before = not client.delete(ref, propagation)
        except UnknownKind:
            gone_before = True
        except KubeError as error:
            raise refusal(error, ref, "delete", False) from None
        outcomes.append(ObjectOutcome(ref=ref, action="absent" if gone_before else "deleted"))
    return outcomes
