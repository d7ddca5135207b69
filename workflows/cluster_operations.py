"""Making one shared piece current, for ClusterWorkflow: apply its CRDs or upgrade its release.

Where it sits: called by workflows/cluster.py under the piece's lock, once per operation however
many targets wait on it (the decision to run it is the cluster workflow's; this only does it and
says what happened, in the words every waiting rollout's journal shows).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import ApplyCrdsInput, HelmReleaseInput
    from spec.cluster_io import PieceOutcome, SharedPiece
    from spec.rollout import Target
    from workflows import calls


async def make_current(
    piece: SharedPiece, target: Target, timeout: timedelta
) -> PieceOutcome:
    if piece.kind == "crds":
        assert piece.bundle is not None and piece.bundle_name is not None
        crds = await calls.execute(
            calls.APPLY_CRDS,
            ApplyCrdsInput(
                target=target, bundle=piece.bundle, bundle_name=piece.bundle_name,
                expected=piece.expected, timeout=timeout,
            ),
            budget=timeout, summary=f"apply the {piece.bundle_name} CRDs {piece.version}",
        )
        changed = crds.apply.changed
        return PieceOutcome(
            key=piece.key, step=piece.step,
            action="applied" if changed else "already current", changed=changed,
            detail=f"{len(crds.established)} CRDs established"
            + ("" if changed else ", already current"),
        )
    assert piece.release is not None
    chart = piece.release.chart.version or piece.release.chart.path or ""
    helm = await calls.execute(
        calls.HELM_UPGRADE_INSTALL,
        HelmReleaseInput(target=target, release=piece.release, timeout=timeout),
        budget=timeout,
        summary=f"helm upgrade --install {piece.release.release_name} {chart} (shared)",
    )
    changed = helm.action != "unchanged"
    action = helm.action if helm.action in ("installed", "upgraded") else "already current"
    detail = f"{action}, revision {helm.revision}" + (
        f" (repaired: {helm.repaired})" if helm.repaired else ""
    )
    workflow.logger.info("shared piece %s: %s", piece.key, detail)
    return PieceOutcome(
        key=piece.key, step=piece.step,
        action="installed" if helm.action == "installed"
        else "upgraded" if helm.action == "upgraded" else "already current",
        changed=changed, detail=detail, revision=helm.revision, repaired=helm.repaired,
    )
