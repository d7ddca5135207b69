"""Which cluster-wide pieces a spec needs, and who may have which version of them.

Where it sits: pure logic used by RolloutWorkflow and TeardownWorkflow (to say what they ask the
cluster for) and by ClusterWorkflow (to refuse an ask whose version differs from the one another
live target uses, to decide what a teardown may remove, and whether an ask would change nothing:
a piece checked moments ago for a target that already uses it is answered without an update).

Version policy: a cluster holds one version of each shared piece. A target may change a piece's
version only while no other target uses it; otherwise its ask is refused with a sentence naming
the other target and both versions, before anything changes. To move several targets to a new
version, tear the others down (or move them all, one after the other, once each is the last
user); a silent upgrade under another live target is exactly what this refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from spec.cluster_io import (
    EnsureAnswer,
    EnsureAsk,
    PieceOutcome,
    PieceRecord,
    SharedPiece,
    Standing,
    crd_piece,
    release_piece,
)
from spec.crds import BUNDLE_CRDS
from spec.rollout import RolloutSpec, Target

# A piece made current this recently over the same connection is not checked again: a burst of
# rollouts costs one helm check per piece. Someone removing a piece by hand within this window
# is noticed by the rollout's own waits, and by the next ask after it.
FRESH_FOR = timedelta(seconds=30)


@dataclass(frozen=True)
class Verified:
    """A piece made current at `version` over `connection` at `at` (for `asker`)."""

    version: str
    connection: str
    at: datetime
    asker: str


def connection(target: Target) -> str:
    return f"{target.kubeconfig}|{target.context}|{target.in_cluster}"


def fresh(verified: Verified | None, piece: SharedPiece, target: Target, now: datetime
          ) -> PieceOutcome | None:
    """"Already current" without an operation, when an operation over the same connection
    made this version current less than FRESH_FOR ago (many targets started in a burst then
    cost one helm check, not one each)."""
    if (
        verified is None
        or verified.version != piece.version
        or verified.connection != connection(target)
    ):
        return None
    # Never negative: the asker's clock (a query's `now`) may trail the workflow's.
    age = max(now - verified.at, timedelta(0))
    if age >= FRESH_FOR:
        return None
    return PieceOutcome(
        key=piece.key, step=piece.step, action="already current", changed=False,
        detail=f"already current: made current {age.total_seconds():.0f}s ago for "
        f"{verified.asker}",
    )


def standing(
    records: Mapping[str, PieceRecord],
    in_flight: Mapping[str, str],
    verified: Mapping[str, Verified],
    ask: EnsureAsk,
    now: datetime,
) -> Standing:
    """Whether `ask` would change nothing (`in_flight`: piece key -> the version an operation
    is making current). Only a target that already uses every piece at the asked version is
    answered so: anyone else must be recorded as a user, which takes the update."""
    outcomes = []
    for piece in ask.pieces:
        record = records.get(piece.key)
        if (
            record is None
            or record.piece.version != piece.version
            or ask.target_id not in record.users
        ):
            return Standing()
        if in_flight.get(piece.key) == piece.version:
            return Standing(in_flight=True)
        outcome = fresh(verified.get(piece.key), piece, ask.target, now)
        if outcome is None:
            return Standing()
        outcomes.append(outcome)
    return Standing(answer=EnsureAnswer(outcomes=outcomes))


def dependency_pieces(spec: RolloutSpec) -> list[SharedPiece]:
    """Phase 2: the CRD bundles (unless the spec says they are already installed) and the LWS
    controller release (unless the spec names none): none depends on another, so the cluster
    workflow makes them current at once (EnsureAsk.at_once)."""
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


def provider_after(
    dependencies: Sequence[SharedPiece], provider: Sequence[SharedPiece]
) -> dict[str, list[str]]:
    """When the two phases' pieces go in one ask (EnsureAsk.after): each provider release
    waits for the CRD bundles (the provider's gateway controller serves their kinds) and for the
    release before it (a later one may need an earlier one's CRDs); the LWS release waits for
    nothing and runs beside them."""
    bundles = [piece.key for piece in dependencies if piece.kind == "crds"]
    return {
        piece.key: [*bundles, *([provider[i - 1].key] if i else [])]
        for i, piece in enumerate(provider)
    }


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
