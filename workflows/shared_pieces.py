"""Which cluster-wide pieces a spec needs, and who may have which version of them.

Where it sits: pure logic used by RolloutWorkflow and TeardownWorkflow (to say what they ask the
cluster for) and by ClusterWorkflow (to refuse an ask whose version differs from the one another
live target uses, and to decide what a teardown may remove).

Version policy: a cluster holds one version of each shared piece. A target may change a piece's
version only while no other target uses it; otherwise its ask is refused with a sentence naming
the other target and both versions, before anything changes. To move several targets to a new
version, tear the others down (or move them all, one after the other, once each is the last
user); a silent upgrade under another live target is exactly what this refuses.
"""

from __future__ import annotations

from collections.abc import Mapping

from spec.cluster_io import PieceRecord, SharedPiece, crd_piece, release_piece
from spec.crds import BUNDLE_CRDS
from spec.rollout import RolloutSpec


def dependency_pieces(spec: RolloutSpec) -> list[SharedPiece]:
    """Phase 2: the CRD bundles (unless the spec says they are already installed) and the LWS
    controller release (unless the spec names none), in the order they are installed."""
    deps = spec.dependencies
    pieces = []
    if not deps.gateway_api_crds.already_installed:
        pieces.append(
            crd_piece("gateway-api", deps.gateway_api_crds, list(BUNDLE_CRDS["gateway-api"]))
        )
    if not deps.inference_extension_crds.already_installed:
        bundle = deps.inference_extension_crds
        pieces.append(
            crd_piece("inference-extension", bundle, list(BUNDLE_CRDS["inference-extension"]))
        )
    lws = deps.leader_worker_set.release
    if lws is not None:
        piece = release_piece("lws-controller", lws, lws.namespace or spec.target.namespace)
        # The LWS chart brings this CRD; helm leaves CRDs behind on uninstall, so removing the
        # LWS controller deletes it explicitly.
        pieces.append(piece.model_copy(update={"expected": list(BUNDLE_CRDS["leaderworkerset"])}))
    return pieces


def provider_pieces(spec: RolloutSpec) -> list[SharedPiece]:
    """Phase 3: the gateway provider's releases, in order."""
    return [
        release_piece(
            f"gateway-provider/{release.release_name}", release,
            release.namespace or spec.target.namespace,
        )
        for release in spec.gateway_provider.releases
    ]


def conflict(
    records: Mapping[str, PieceRecord], piece: SharedPiece, target_id: str
) -> str | None:
    """The sentence refusing `target_id`'s ask for `piece`, or None when it may have it."""
    record = records.get(piece.key)
    if record is None or record.piece.version == piece.version:
        return None
    others = [user for user in record.users if user != target_id]
    if not others:
        return None
    return (
        f"{piece.label} is shared: target {others[0]} uses {record.piece.version}, this rollout "
        f"(target {target_id}) asks for {piece.version}; a cluster holds one version of a shared "
        "piece, so move the other targets to it or tear them down first"
        + (f" ({len(others) - 1} more targets use it)" if len(others) > 1 else "")
    )


def with_user(
    records: Mapping[str, PieceRecord], piece: SharedPiece, target_id: str
) -> PieceRecord:
    """The record after `target_id` got `piece` at its version."""
    record = records.get(piece.key)
    users = [] if record is None else [u for u in record.users if u != target_id]
    return PieceRecord(piece=piece, users=sorted([*users, target_id]))


def without_user(record: PieceRecord, target_id: str) -> PieceRecord:
    return record.model_copy(update={"users": [u for u in record.users if u != target_id]})
