"""Which cluster a ClusterWorkflow's records are of, and what an ask from another cluster of the
same name does to them. Pure: no Temporal, no I/O.

Where it sits: ClusterWorkflow (workflows/cluster.py) meets each ask's cluster UID (the UID of
the asker's kube-system namespace, read by the asking activity) in its update validators and
handlers, and answers queries of another cluster from the records put aside for it.

Why: `target.cluster` is a name. A cluster deleted and created again under it (a kind or dev
cluster, rebuilt) kept the deleted cluster's records: its targets stayed users of pieces that no
longer exist (so the version they used refused the new cluster's asks, and a teardown kept what
"they" used) and its GPU holds were counted against the new cluster's nodes. So the records are
of one cluster, known by UID; an ask of another cluster puts them aside and takes that
cluster's own (none, for a new cluster). Two live clusters that share a name each keep their
records, the writer switching between them; only the switch waits for operations of the other
cluster to end. The last `KEPT_ASIDE` clusters' records are kept aside; older ones (of clusters
long deleted, as a rule) are dropped.
"""

from __future__ import annotations

from typing import Literal

from spec.cluster_io import ClusterRecords

KEPT_ASIDE = 16

# same: the records are the asker's (or the ask carries no UID: sent before UIDs were read).
# adopt: the records are of no known cluster yet (a workflow from before UIDs): they become the
#   asker's.
# switch: the records are another cluster's: put them aside, take the asker's.
# busy: as switch, but operations on the other cluster still run: ask again after them.
Meeting = Literal["same", "adopt", "switch", "busy"]


def meeting(known: str, asked: str, busy: bool) -> Meeting:
    """What an ask of cluster `asked` finds in records of cluster `known`."""
    if not asked or asked == known:
        return "same"
    if not known:
        return "adopt"
    return "busy" if busy else "switch"


def of_another(known: str, asked: str) -> bool:
    """The records are not of the asker's cluster."""
    return bool(known) and bool(asked) and asked != known


def switched(
    aside: dict[str, ClusterRecords], known: str, current: ClusterRecords, asked: str
) -> tuple[ClusterRecords, dict[str, ClusterRecords]]:
    """`asked`'s records (none yet: empty) and those left aside, `current` (of `known`) among
    them, newest last, at most KEPT_ASIDE."""
    taken = aside.get(asked, ClusterRecords())
    rest = {uid: records for uid, records in aside.items() if uid not in (asked, known)}
    rest[known] = current
    return taken, dict(list(rest.items())[-KEPT_ASIDE:])


def busy_refusal(cluster: str, known: str, asked: str) -> str:
    return (
        f"cluster {cluster!r} (kube-system UID {asked}) waits for operations on another "
        f"cluster of the same name ({known}) to end; ask again"
    )


def switching(cluster: str, known: str, asked: str, users: int, holds: int) -> str:
    return (
        f"cluster {cluster!r}: an ask of the cluster with kube-system UID {asked}, not {known} "
        f"(created again under this name, or a second cluster of it): {users} piece users and "
        f"{holds} GPU holds of {known} put aside"
    )
