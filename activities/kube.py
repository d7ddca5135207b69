"""Kubernetes activities: apply, namespaces, CRDs, the HF token Secret, snapshots, delete.

Where it sits: called by the rollout workflows for phases 2, 4, 6 and 9 and for rollback (see
docs/architecture.md, "Phases"). Every write is a server-side apply with field manager
`llmd-rollout`, so running an activity twice leaves the cluster as one run did and reports
"unchanged" the second time (each object is read first and its resourceVersion compared after;
k8s/objects.py). The waits live
in activities/waits.py; the blocking client runs on threads while the activity heartbeats, and
`target_client` turns what the API said into the failure (or retry) the workflow sees.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any

from temporalio import activity

import manifests
from activities.failures import command_failure, failure, permission_denied_in, target_client
from activities.heartbeat import heartbeat_step, run_blocking
from k8s.client import KubeClient, KubeError
from k8s.crds import (
    KubectlFailed,
    crd_documents,
    is_kustomization,
    kubectl_apply_kustomization,
)
from k8s.objects import apply_all, delete_refs, list_owned, refusal
from k8s.readiness import is_true
from k8s.snapshot import (
    REVISION_KEY,
    SnapshotError,
    decode_snapshot,
    decode_spec,
    encode_snapshot,
    holds_configuration,
    last_known_good,
    last_known_good_name,
    snapshot_digest,
    snapshot_name,
)
from k8s.watching import Collection, Informer, Wakeup
from spec.activity_io import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ApplyCrdsInput,
    ApplyModelServiceInput,
    ApplyModelServiceResult,
    ApplyResult,
    CrdsResult,
    DeleteObjectsInput,
    DeleteResult,
    EnsureNamespaceInput,
    HfTokenSecretInput,
    LastKnownGood,
    MarkLastKnownGoodInput,
    ObjectOutcome,
    ObjectRef,
    RestoreInput,
    RestoreResult,
    SecretResult,
    SnapshotInput,
    SnapshotLookupInput,
    SnapshotRef,
)
from spec.crds import CRD_API_VERSION, CRD_KIND
from spec.reasons import FailureReason
from spec.rollout import RoleName, RolloutSpec, Target


def model_service_objects(input: ApplyModelServiceInput) -> list[dict[str, Any]]:
    """The rendered objects of one part of the model service, with the plan's surge applied."""
    spec = input.spec
    objects: list[dict[str, Any]] = []
    if input.part in ("shared", "all"):
        objects += manifests.render_shared(spec)
    roles: list[RoleName] = list(spec.strategy.role_order) if input.part == "all" else []
    if input.part == "prefill" or input.part == "decode":
        roles = [input.part]
    for role in roles:
        lws = manifests.render_role(spec, role, partition=input.partition)
        if input.max_surge is not None:
            _set_surge(spec, lws, role, input.max_surge)
        objects.append(lws)
    return objects


def _set_surge(spec: RolloutSpec, lws: dict[str, Any], role: RoleName, surge: int) -> None:
    strategy = lws["spec"].setdefault(
        "rolloutStrategy", {"type": "RollingUpdate", "rollingUpdateConfiguration": {}}
    )
    configuration = strategy.setdefault("rollingUpdateConfiguration", {})
    configuration.setdefault("maxUnavailable", spec.strategy.for_role(role).max_unavailable)
    configuration["maxSurge"] = surge


@activity.defn
async def apply_model_service(input: ApplyModelServiceInput) -> ApplyModelServiceResult:
    """Render (manifests/) and server-side apply the model-service objects, forced: ours."""
    objects = model_service_objects(input)
    async with target_client(input.spec.target) as client:
        result = await run_blocking(
            lambda: apply_all(client, objects, True, input.spec.target.namespace),
            f"applying model service ({input.part})",
        )
    return ApplyModelServiceResult(revision=manifests.spec_revision(input.spec), apply=result)


# --- namespace ---------------------------------------------------------------------------------


def ensure_namespace_sync(client: KubeClient, name: str) -> ObjectOutcome:
    ref = ObjectRef(api_version="v1", kind="Namespace", name=name)
    try:
        existing = client.get(ref)
        if existing is not None:
            if (existing.get("status") or {}).get("phase") == "Terminating":
                raise failure(
                    FailureReason.APPLY_REJECTED,
                    f"namespace {name} is being deleted; wait until it is gone and run again",
                )
            version = existing["metadata"].get("resourceVersion")
            return ObjectOutcome(ref=ref, action="unchanged", resource_version=version)
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        created = client.apply(body, force=False)
    except KubeError as error:
        raise refusal(error, ref, "apply", False) from None
    version = created["metadata"].get("resourceVersion")
    return ObjectOutcome(ref=ref, action="created", resource_version=version)


@activity.defn
async def ensure_namespace(input: EnsureNamespaceInput) -> ApplyResult:
    """Create the namespace unless it exists (an existing one is left as it is)."""
    name = input.namespace or input.target.namespace
    async with target_client(input.target) as client:
        outcome = await run_blocking(lambda: ensure_namespace_sync(client, name), name)
    return ApplyResult(outcomes=[outcome])


# --- CRDs --------------------------------------------------------------------------------------


async def wait_crds_established(client: KubeClient, names: list[str], timeout: float) -> list[str]:
    """Watch CRDs until each named one is Established; fail naming those that are not."""
    wakeup = Wakeup()
    informer = Informer(client, Collection(CRD_API_VERSION, CRD_KIND), wakeup.set).start()
    deadline = time.monotonic() + timeout
    pending = list(names)
    try:
        while True:
            if informer.synced:
                pending = [n for n in names if not is_true(informer.get(n), "Established")]
                if not pending:
                    return names
                heartbeat_step("CRDs Established", more={"pending": pending})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise failure(
                    FailureReason.MISSING_CRD,
                    f"CRDs not Established after {timeout:.0f}s: {', '.join(pending)}",
                    pending=pending,
                )
            await wakeup.wait(min(remaining, 5.0))
    finally:
        informer.stop()


@activity.defn
async def apply_crds(input: ApplyCrdsInput) -> CrdsResult:
    """Install (or, when already installed, check) a CRD bundle and wait until Established."""
    bundle = input.bundle
    async with target_client(input.target) as client:
        if bundle.already_installed:
            established = await wait_crds_established(
                client, list(input.expected), input.timeout.total_seconds()
            )
            return CrdsResult(apply=ApplyResult(), established=established, skipped=True)
        if is_kustomization(bundle.source):
            try:
                names = await run_blocking(
                    lambda: kubectl_apply_kustomization(input.target, bundle.source),
                    f"kubectl apply -k {bundle.source}",
                )
            except KubectlFailed as error:
                raise command_failure(
                    FailureReason.APPLY_REJECTED, error.message, error.message
                ) from None
            result = ApplyResult(
                outcomes=[
                    ObjectOutcome(
                        ref=ObjectRef(api_version=CRD_API_VERSION, kind=CRD_KIND, name=n),
                        action="configured",
                    )
                    for n in names
                ]
            )
        else:
            documents = await asyncio.to_thread(crd_documents, bundle.source, input.bundle_name)
            if not documents:
                raise failure(
                    FailureReason.MISSING_CRD, f"no CustomResourceDefinition in {bundle.source}"
                )
            # The spec installs these CRDs at its pinned version: they are ours to force.
            result = await run_blocking(
                lambda: apply_all(client, documents, True, input.target.namespace),
                f"applying {input.bundle_name} CRDs",
            )
            names = [o.ref.name for o in result.outcomes]
        established = await wait_crds_established(
            client, sorted(set(names) | set(input.expected)), input.timeout.total_seconds()
        )
        return CrdsResult(apply=result, established=established)


# --- the HF token Secret -----------------------------------------------------------------------


def hf_secret_sync(client: KubeClient, input: HfTokenSecretInput) -> SecretResult:
    token = input.hf_token
    namespace = input.target.namespace
    ref = ObjectRef(api_version="v1", kind="Secret", name=token.secret_name, namespace=namespace)
    try:
        existing = client.get(ref)
    except KubeError as error:
        raise refusal(error, ref, "apply", False) from None
    base = SecretResult(
        name=token.secret_name, namespace=namespace, key=token.secret_key, action="verified"
    )
    if token.existing_secret or token.from_env is None:
        if existing is None:
            raise failure(
                FailureReason.SECRET_MISSING,
                f"Secret {namespace}/{token.secret_name} does not exist; create it with key "
                f"{token.secret_key} or set modelService.hfToken.fromEnv",
                secret=token.secret_name,
            )
        if token.secret_key not in (existing.get("data") or {}):
            raise failure(
                FailureReason.SECRET_MISSING,
                f"Secret {namespace}/{token.secret_name} has no key {token.secret_key}",
                secret=token.secret_name,
                key=token.secret_key,
            )
        return base
    value = os.environ.get(token.from_env)
    if not value:
        raise failure(
            FailureReason.SECRET_MISSING,
            f"the worker's environment variable {token.from_env} (modelService.hfToken.fromEnv) "
            "is not set or empty",
            variable=token.from_env,
        )
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    if existing is not None and (existing.get("data") or {}).get(token.secret_key) == encoded:
        current = (existing.get("metadata") or {}).get("labels") or {}
        if all(current.get(k) == v for k, v in labels.items()):
            return base.model_copy(update={"action": "unchanged"})
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": token.secret_name, "namespace": namespace, "labels": labels},
        "data": {token.secret_key: encoded},
    }
    try:
        # The spec names this Secret as ours to write (fromEnv): take it over if someone else
        # created it, e.g. with `kubectl create secret`.
        client.apply(body, force=True)
    except KubeError as error:
        # The API server never echoes Secret data, but say nothing of the body all the same.
        if error.status == 403 and (denied := permission_denied_in(error.message)) is not None:
            raise denied from None
        raise failure(
            FailureReason.APPLY_REJECTED,
            f"the API server rejected Secret {namespace}/{token.secret_name} "
            f"(HTTP {error.status} {error.reason})",
        ) from None
    return base.model_copy(update={"action": "created" if existing is None else "configured"})


@activity.defn
async def ensure_hf_token_secret(input: HfTokenSecretInput) -> SecretResult:
    """Create/update the HF token Secret from the worker's environment, or verify an existing
    one. The value is read here only and never leaves this function."""
    async with target_client(input.target) as client:
        return await run_blocking(lambda: hf_secret_sync(client, input), "HF token Secret")


# --- owned objects, snapshots, last-known-good, restore ----------------------------------------


def _config_map(client: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return client.get(ObjectRef(api_version="v1", kind="ConfigMap", name=name, namespace=namespace))


def snapshot_sync(client: KubeClient, input: SnapshotInput) -> SnapshotRef:
    namespace = input.target.namespace
    objects = list_owned(client, namespace, input.rollout)
    try:
        config_map = encode_snapshot(input.rollout, input.revision, namespace, objects, input.spec)
    except SnapshotError as error:
        raise failure(FailureReason.APPLY_REJECTED, str(error)) from None
    name = config_map["metadata"]["name"]
    existing = _config_map(client, namespace, name)
    refs = sorted((ObjectRef.of(o) for o in objects), key=str)
    if snapshot_digest(existing) == snapshot_digest(config_map):
        action = "unchanged"
    else:
        apply_all(client, [config_map], True, namespace)
        action = "created" if existing is None else "configured"
    return SnapshotRef(
        rollout=input.rollout,
        revision=input.revision,
        config_map=name,
        namespace=namespace,
        objects=refs,
        action=action,
        spec=input.spec,
    )


@activity.defn
async def snapshot_objects(input: SnapshotInput) -> SnapshotRef:
    """Store the applied configuration of every object the rollout owns (and the spec, when
    given) in a snapshot ConfigMap in the target namespace."""
    async with target_client(input.target) as client:
        return await run_blocking(lambda: snapshot_sync(client, input), "snapshot")


def read_snapshot(
    client: KubeClient, target: Target, rollout: str, revision: str | None
) -> tuple[SnapshotRef, list[dict[str, Any]]] | None:
    """The snapshot of `revision` (None: the last-known-good one) and its objects, if any."""
    namespace = target.namespace
    if revision is None:
        pointer = _config_map(client, namespace, last_known_good_name(rollout))
        if pointer is None:
            return None
        revision = str((pointer.get("data") or {}).get(REVISION_KEY) or "")
    config_map = _config_map(client, namespace, snapshot_name(rollout, revision))
    if config_map is None:
        return None
    try:
        objects = decode_snapshot(config_map)
        spec = decode_spec(config_map)
    except SnapshotError as error:
        raise failure(FailureReason.APPLY_REJECTED, str(error)) from None
    ref = SnapshotRef(
        rollout=rollout,
        revision=revision,
        config_map=config_map["metadata"]["name"],
        namespace=namespace,
        objects=sorted((ObjectRef.of(o) for o in objects), key=str),
        spec=spec,
    )
    return ref, objects


@activity.defn
async def read_last_known_good(input: SnapshotLookupInput) -> LastKnownGood:
    """The recorded last-known-good revision (or the snapshot of `input.revision`)."""
    async with target_client(input.target) as client:
        found = await run_blocking(
            lambda: read_snapshot(client, input.target, input.rollout, input.revision), "lookup"
        )
    if found is None:
        return LastKnownGood(rollout=input.rollout, revision=None)
    snapshot = found[0]
    return LastKnownGood(
        rollout=input.rollout, revision=snapshot.revision, snapshot=snapshot, spec=snapshot.spec
    )


def mark_sync(client: KubeClient, input: MarkLastKnownGoodInput) -> LastKnownGood:
    found = read_snapshot(client, input.target, input.rollout, input.revision)
    if found is None:
        raise failure(
            FailureReason.APPLY_REJECTED,
            f"no snapshot {snapshot_name(input.rollout, input.revision)} to mark last-known-good; "
            "take it first (snapshot_objects)",
        )
    pointer = last_known_good(input.rollout, input.revision, input.target.namespace)
    outcome = apply_all(client, [pointer], True, input.target.namespace).outcomes[0]
    return LastKnownGood(
        rollout=input.rollout,
        revision=input.revision,
        snapshot=found[0],
        spec=found[0].spec,
        action="created"
        if outcome.action == "created"
        else "configured"
        if outcome.action == "configured"
        else "unchanged",
    )


@activity.defn
async def mark_last_known_good(input: MarkLastKnownGoodInput) -> LastKnownGood:
    """Record `revision` as the one a later rollback returns to (kept in the cluster)."""
    async with target_client(input.target) as client:
        return await run_blocking(lambda: mark_sync(client, input), "last-known-good")


async def wait_gone(client: KubeClient, refs: list[ObjectRef], timeout: float) -> None:
    """Watch until none of `refs` exists any more (finalizers and foreground deletion done)."""
    if not refs:
        return
    wakeup = Wakeup()
    groups: dict[tuple[str, str, str | None], Informer] = {}
    for ref in refs:
        key = (ref.api_version, ref.kind, ref.namespace)
        if key not in groups:
            groups[key] = Informer(
                client, Collection(ref.api_version, ref.kind, ref.namespace), wakeup.set
            ).start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            for (api_version, kind, namespace), informer in groups.items():
                # A refused list or watch never syncs: say why now instead of timing out.
                if informer.error is not None:
                    where = f" in {namespace}" if namespace else ""
                    raise informer.error.about(f"cannot watch {kind} ({api_version}){where}")
            # Gone only once the watch is accepted too, even when the list already shows them
            # gone: whether teardown needs RBAC `watch` must not depend on how fast the
            # cluster finalized them (a namespace here, Terminating for long on a real one).
            remaining_refs = [
                r
                for r in refs
                if not _watching(groups[(r.api_version, r.kind, r.namespace)])
                or groups[(r.api_version, r.kind, r.namespace)].get(_key(r)) is not None
            ]
            if not remaining_refs:
                return
            heartbeat_step("deleting", more={"remaining": [str(r) for r in remaining_refs]})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise failure(
                    FailureReason.ROLLOUT_TIMEOUT,
                    f"still present {timeout:.0f}s after deletion: "
                    + ", ".join(str(r) for r in remaining_refs),
                )
            await wakeup.wait(min(remaining, 5.0))
    finally:
        for informer in groups.values():
            informer.stop()


def _watching(informer: Informer) -> bool:
    return informer.synced and informer.watch_accepted


def _key(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name


@activity.defn
async def delete_objects(input: DeleteObjectsInput) -> DeleteResult:
    """Delete the given objects (and/or all a rollout owns) and wait until they are gone."""
    async with target_client(input.target) as client:
        refs = list(input.refs)
        if input.rollout:
            owned = await run_blocking(
                lambda: list_owned(client, input.target.namespace, input.rollout or ""), "listing"
            )
            refs += [ObjectRef.of(o) for o in owned if ObjectRef.of(o) not in refs]
        outcomes = await run_blocking(
            lambda: delete_refs(client, refs, input.propagation), "deleting"
        )
        await wait_gone(
            client,
            [o.ref for o in outcomes if o.action == "deleted"],
            input.timeout.total_seconds(),
        )
        return DeleteResult(outcomes=outcomes)


def restore_sync(client: KubeClient, input: RestoreInput) -> tuple[RestoreResult, list[ObjectRef]]:
    found = read_snapshot(client, input.target, input.rollout, input.revision)
    if found is None:
        which = input.revision or "last-known-good"
        raise failure(
            FailureReason.APPLY_REJECTED,
            f"no snapshot ({which}) of rollout {input.rollout} in namespace "
            f"{input.target.namespace} to restore",
        )
    snapshot, objects = found
    # The applied configurations, re-applied under our field manager: ownership ends up as the
    # original apply left it. An object we never applied (identity only) is kept, not applied.
    applied = apply_all(
        client, [o for o in objects if holds_configuration(o)], True, input.target.namespace
    )
    keep = {str(ObjectRef.of(o)) for o in objects}
    extra = [
        ObjectRef.of(o)
        for o in list_owned(client, input.target.namespace, input.rollout)
        if str(ObjectRef.of(o)) not in keep
    ]
    deleted = delete_refs(client, extra, "Foreground")
    result = RestoreResult(revision=snapshot.revision, apply=applied, deleted=deleted)
    return result, [o.ref for o in deleted if o.action == "deleted"]


@activity.defn
async def restore_snapshot(input: RestoreInput) -> RestoreResult:
    """Put the rollout's objects back as a snapshot holds them: apply their applied
    configurations (forced, our field manager), delete what the rollout owns now that the
    snapshot does not hold, and wait until that is gone."""
    async with target_client(input.target) as client:
        result, gone = await run_blocking(lambda: restore_sync(client, input), "restoring")
        await wait_gone(client, gone, input.timeout.total_seconds())
        return result
