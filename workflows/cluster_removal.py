"""Removing a shared piece, for ClusterWorkflow: its release or CRDs, then its namespace.

Where it sits: called by workflows/cluster.py when a teardown asks to remove a piece that no
other target uses (the decision is the cluster workflow's; this only does it). Every step is
idempotent: what is already gone reads `absent`, so a repeated teardown changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import DeleteObjectsInput, HelmUninstallInput, ObjectRef
    from spec.cluster_io import ReleasedPiece, SharedPiece
    from spec.rollout import Target
    from workflows import calls

CRD_API = "apiextensions.k8s.io/v1"


async def remove_piece(piece: SharedPiece, target: Target, timeout: timedelta) -> ReleasedPiece:
    """Uninstall a release (helm leaves CRDs behind) and delete the CRDs that go with it."""
    gone, detail = False, f"{piece.label}: nothing left to delete"
    if piece.kind == "helm":
        assert piece.release is not None and piece.namespace is not None
        helm = await calls.execute(
            calls.HELM_UNINSTALL,
            HelmUninstallInput(
                target=target, release_name=piece.release.release_name,
                namespace=piece.namespace, timeout=timeout,
            ),
            budget=timeout, summary=f"helm uninstall {piece.release.release_name}",
        )
        gone, detail = helm.action == "uninstalled", f"{piece.label}: {helm.action}"
    if piece.expected:
        refs = [
            ObjectRef(api_version=CRD_API, kind="CustomResourceDefinition", name=name)
            for name in piece.expected
        ]
        names = await _delete(target, refs, timeout, f"delete the CRDs of {piece.label}")
        if names:
            gone = True
            detail += f"; CRDs deleted: {', '.join(names)}"
    return ReleasedPiece(
        key=piece.key, step=piece.step, action="removed" if gone else "absent", detail=detail
    )


async def delete_namespace(target: Target, namespace: str, timeout: timedelta) -> ReleasedPiece:
    ref = ObjectRef(api_version="v1", kind="Namespace", name=namespace)
    gone = bool(await _delete(target, [ref], timeout, f"delete namespace {namespace}"))
    return ReleasedPiece(
        key=f"namespace/{namespace}", step=f"namespace/{namespace}",
        action="removed" if gone else "absent",
        detail=f"namespace {namespace} " + ("deleted" if gone else "already gone"),
    )


async def _delete(
    target: Target, refs: list[ObjectRef], timeout: timedelta, summary: str
) -> list[str]:
    """The names of what was deleted (not what was already gone)."""
    deleted = await calls.execute(
        calls.DELETE_OBJECTS, DeleteObjectsInput(target=target, refs=refs, timeout=timeout),
        budget=timeout, summary=summary,
    )
    return [str(o.ref.name) for o in deleted.outcomes if o.action == "deleted"]
