"""What an ask of a cluster finds in a ClusterWorkflow's records (workflows/cluster_identity.py):
its own records, records to adopt, or another cluster's (the name's cluster was created again,
or names a second one), put aside while the asker's own are taken."""

from __future__ import annotations

from spec.cluster_io import ClusterRecords, PieceRecord
from tests.workflows.specs import demo_spec
from workflows.cluster_identity import KEPT_ASIDE, meeting, of_another, switched
from workflows.shared_pieces import dependency_pieces

OLD, NEW = "uid-of-the-deleted-cluster", "uid-of-the-new-cluster"


LWS = next(p for p in dependency_pieces(demo_spec("any")) if p.key == "helm/lws-system/lws")


def records(*users: str) -> ClusterRecords:
    return ClusterRecords(pieces={LWS.key: PieceRecord(piece=LWS, users=list(users))})


def test_an_ask_of_the_records_own_cluster_or_without_a_uid_finds_its_records() -> None:
    assert meeting(OLD, OLD, busy=True) == "same"
    assert meeting(OLD, "", busy=False) == "same"  # sent before UIDs were read
    assert not of_another(OLD, OLD) and not of_another(OLD, "")


def test_records_of_no_known_cluster_are_adopted_by_the_first_cluster_that_asks() -> None:
    assert meeting("", NEW, busy=True) == "adopt"
    assert not of_another("", NEW)


def test_another_cluster_of_the_name_switches_once_nothing_runs_on_the_first() -> None:
    assert meeting(OLD, NEW, busy=False) == "switch"
    assert meeting(OLD, NEW, busy=True) == "busy"
    assert of_another(OLD, NEW)


def test_switching_puts_the_records_aside_and_back_and_keeps_the_newest_few() -> None:
    taken, aside = switched({}, OLD, records("old-target"), NEW)
    assert taken == ClusterRecords() and aside == {OLD: records("old-target")}

    back, aside = switched(aside, NEW, records("new-target"), OLD)
    assert back == records("old-target") and aside == {NEW: records("new-target")}

    for index in range(KEPT_ASIDE + 3):
        _, aside = switched(aside, f"uid-{index}", ClusterRecords(), f"uid-{index + 1}")
    assert len(aside) == KEPT_ASIDE and f"uid-{KEPT_ASIDE + 2}" in aside
    assert NEW not in aside  # the oldest put aside are dropped
