"""Whether an ensure ask would change nothing (answered by query, no update), as pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spec.cluster_io import EnsureAsk, PieceRecord, SharedPiece
from tests.workflows.specs import demo_spec
from workflows.shared_pieces import (
    FRESH_FOR,
    Verified,
    connection,
    dependency_pieces,
    standing,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SPEC = demo_spec("standing")
PIECES = dependency_pieces(SPEC)
ASK = EnsureAsk(
    ask_id="ensure/dependencies/x/run", target_id=SPEC.target_id, target=SPEC.target,
    pieces=PIECES, timeout=timedelta(minutes=2),
)


def records(users: list[str], pieces: list[SharedPiece] = PIECES) -> dict[str, PieceRecord]:
    return {piece.key: PieceRecord(piece=piece, users=users) for piece in pieces}


def verified(
    age: timedelta, target_connection: str = connection(SPEC.target)
) -> dict[str, Verified]:
    return {
        piece.key: Verified(piece.version, target_connection, NOW - age, "clustersim/ns/other")
        for piece in PIECES
    }


def test_a_user_asking_for_what_was_checked_moments_ago_is_answered() -> None:
    found = standing(records([SPEC.target_id]), {}, verified(timedelta(seconds=3)), ASK, NOW)
    assert found.answer is not None and not found.in_flight
    assert [o.key for o in found.answer.outcomes] == [p.key for p in PIECES]
    assert all(o.action == "already current" and not o.changed for o in found.answer.outcomes)
    assert found.answer.outcomes[0].detail == (
        "already current: made current 3s ago for clustersim/ns/other"
    )


def test_anything_that_could_change_takes_the_update() -> None:
    fresh = verified(timedelta(seconds=3))
    # Not yet a user: it must be recorded as one.
    assert standing(records(["clustersim/ns/other"]), {}, fresh, ASK, NOW).answer is None
    # Nothing recorded yet (an empty cluster).
    assert standing({}, {}, fresh, ASK, NOW).answer is None
    # Another version recorded: the update refuses it or makes it current.
    other = [p.model_copy(update={"version": "v0"}) for p in PIECES]
    assert standing(records([SPEC.target_id], other), {}, fresh, ASK, NOW).answer is None
    # Checked too long ago, or over another connection: helm looks again.
    stale = verified(FRESH_FOR)
    assert standing(records([SPEC.target_id]), {}, stale, ASK, NOW).answer is None
    elsewhere = verified(timedelta(seconds=3), "/other/kubeconfig|None|False")
    assert standing(records([SPEC.target_id]), {}, elsewhere, ASK, NOW).answer is None


def test_an_operation_under_way_on_the_asked_version_is_worth_waiting_for() -> None:
    # The CRDs checked moments ago, the LWS release being checked again now.
    lws = PIECES[-1]
    fresh = verified(timedelta(seconds=3))
    found = standing(records([SPEC.target_id]), {lws.key: lws.version}, fresh, ASK, NOW)
    assert found.in_flight and found.answer is None
    # An operation on another version is not this ask's.
    found = standing(records([SPEC.target_id]), {lws.key: "v0"}, verified(FRESH_FOR), ASK, NOW)
    assert not found.in_flight and found.answer is None
    # A piece before it that needs a check takes the update anyway: nothing to wait for.
    stale_first = {**fresh, PIECES[0].key: verified(FRESH_FOR)[PIECES[0].key]}
    found = standing(records([SPEC.target_id]), {lws.key: lws.version}, stale_first, ASK, NOW)
    assert not found.in_flight and found.answer is None


def test_an_asker_whose_clock_trails_reads_an_age_of_zero_not_a_negative_one() -> None:
    ahead = verified(-timedelta(seconds=2))  # verified 2 s after the asker's `now`
    found = standing(records([SPEC.target_id]), {}, ahead, ASK, NOW)
    assert found.answer is not None
    assert found.answer.outcomes[0].detail.startswith("already current: made current 0s ago")
