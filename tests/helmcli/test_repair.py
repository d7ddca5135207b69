"""The repair rules for a release locked in pending-*: only what is provably abandoned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from helmcli.repair import PENDING_REPAIR_AGE, parse_updated, verdict, written_by
from spec.activity_io import HelmReleaseState, HelmRevision

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def state(*revisions: tuple[str, str, datetime]) -> HelmReleaseState:
    history = [
        HelmRevision(
            revision=index + 1, status=status, chart="lws-0.1.0", description=description,
            updated=when.isoformat().replace("+00:00", "Z"),
        )
        for index, (status, description, when) in enumerate(revisions)
    ]
    return HelmReleaseState(
        release_name="lws", namespace="lws-system", exists=True, revision=len(history),
        status=history[-1].status, history=history,
    )


def test_a_pending_upgrade_after_our_own_revision_is_ours_to_repair() -> None:
    stuck = state(
        ("deployed", "llmd-rollout digest=ab12 by cluster/q/c", NOW),
        ("pending-upgrade", "Preparing upgrade", NOW),
    )
    assert verdict(stuck, "cluster/q/c", resumed=False, now=NOW).repair
    other = verdict(stuck, "rollout/c/ns/x", resumed=False, now=NOW)
    assert not other.repair and "may still be running" in other.why


def test_a_young_pending_install_waits_unless_our_earlier_attempt_started_it() -> None:
    stuck = state(("pending-install", "Initial install underway", NOW - timedelta(seconds=5)))
    assert not verdict(stuck, "rollout/c/ns/x", resumed=False, now=NOW).repair
    assert verdict(stuck, "rollout/c/ns/x", resumed=True, now=NOW).repair
    old = verdict(stuck, "rollout/c/ns/x", resumed=False, now=NOW + PENDING_REPAIR_AGE)
    assert old.repair and old.why.startswith("abandoned: pending-install for ")


def test_helm_times_and_writers_are_read() -> None:
    assert parse_updated("2026-12-06T11:59:00.123456789Z") == datetime(
        2026, 12, 6, 11, 59, 0, 123456, tzinfo=UTC
    )
    assert parse_updated("2026-12-06T13:59:00.5+02:00") == datetime(
        2026, 12, 6, 11, 59, 0, 500000, tzinfo=UTC
    )
    assert parse_updated("garbage") is None
    assert written_by("llmd-rollout digest=ab by rollout/c/ns/x") == "rollout/c/ns/x"
    assert written_by("Install complete") is None


def test_a_failed_first_install_holds_no_lock_but_a_cut_uninstall_needs_proof() -> None:
    failed = state(("failed", "Release failed: context deadline exceeded", NOW))
    assert verdict(failed, "rollout/c/ns/x", resumed=False, now=NOW).repair
    uninstalling = state(
        ("deployed", "llmd-rollout digest=ab12 by cluster/q/c", NOW),
        ("uninstalling", "Deletion in progress", NOW),
    )
    assert not verdict(uninstalling, "rollout/c/ns/x", resumed=False, now=NOW).repair
    assert verdict(uninstalling, "cluster/q/c", resumed=False, now=NOW).repair
