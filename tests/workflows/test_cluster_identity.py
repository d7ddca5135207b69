"""What an ask of a cluster finds in a ClusterWorkflow's records (workflows/cluster_identity.py):
its own records, records to adopt or to forget (the cluster was created again under its name),
or a refusal (two live clusters share the name)."""

from __future__ import annotations

from workflows.cluster_identity import meeting, of_another

OLD, NEW = "uid-of-the-deleted-cluster", "uid-of-the-new-cluster"


def test_an_ask_of_the_records_own_cluster_or_without_a_uid_finds_its_records() -> None:
    assert meeting(OLD, [], OLD, busy=True) == "same"
    assert meeting(OLD, [], "", busy=False) == "same"  # sent before UIDs were read
    assert not of_another(OLD, OLD) and not of_another(OLD, "")


def test_records_of_no_known_cluster_are_adopted_by_the_first_cluster_that_asks() -> None:
    assert meeting("", [], NEW, busy=True) == "adopt"
    assert not of_another("", NEW)


def test_a_new_cluster_of_the_name_forgets_the_records_once_nothing_of_the_old_runs() -> None:
    assert meeting(OLD, [], NEW, busy=False) == "forget"
    assert meeting(OLD, [], NEW, busy=True) == "busy"
    assert of_another(OLD, NEW)


def test_a_forgotten_cluster_asking_again_is_a_second_live_cluster_of_the_name() -> None:
    assert meeting(NEW, [OLD], OLD, busy=False) == "foreign"
