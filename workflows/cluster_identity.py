"""Which cluster a ClusterWorkflow's records are of, and what an ask from another cluster of the
same name does to them. Pure: no Temporal, no I/O.

Where it sits: ClusterWorkflow (workflows/cluster.py) meets each ask's cluster UID (the UID of
the asker's kube-system namespace, read by the asking activity) in its update validators and
handlers, and hides its records from queries of another cluster.

Why: a cluster deleted and created again under the same `target.cluster` name (a kind or dev
cluster, rebuilt) keeps its cluster workflow, whose records are of the cluster that is gone: its
targets stay users of pieces that no longer exist (so the version they used refuses the new
cluster's asks, and a teardown keeps what "they" use), and its GPU holds are counted against the
new cluster's nodes. The first ask of the new cluster forgets them. A cluster whose records were
forgotten asking again means two live clusters share one name: that is refused, since forgetting
back and forth would drop each one's users in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

# same: the records are the asker's (or the ask carries no UID: sent before UIDs were read).
# adopt: the records are of no known cluster yet (a workflow from before UIDs): they become the
#   asker's.
# forget: the asker's cluster replaced the one the records are of.
# busy: as forget, but operations of the previous cluster still run: ask again after them.
# foreign: the asker's cluster was forgotten before: two live clusters share the name.
Meeting = Literal["same", "adopt", "forget", "busy", "foreign"]


def meeting(known: str, forgotten: Sequence[str], asked: str, busy: bool) -> Meeting:
    """What an ask of cluster `asked` finds in records of cluster `known`."""
    if not asked or asked == known:
        return "same"
    if asked in forgotten:
        return "foreign"
    if not known:
        return "adopt"
    return "busy" if busy else "forget"


def of_another(known: str, asked: str) -> bool:
    """The records are not of the asker's cluster (a query cannot forget them, only hide them)."""
    return bool(known) and bool(asked) and asked != known


def foreign_refusal(cluster: str, known: str, asked: str) -> str:
    return (
        f"cluster name {cluster!r} names two live clusters: its records are of the cluster "
        f"whose kube-system namespace has UID {known}, and this target's cluster ({asked}) was "
        f"forgotten when that one first asked. Give each cluster a target.cluster of its own"
    )


def busy_refusal(cluster: str, known: str) -> str:
    return (
        f"cluster {cluster!r} was created again, and operations of the previous one (kube-system "
        f"UID {known}) still run; ask again when they end"
    )


def forgetting(cluster: str, known: str, asked: str, users: int, holds: int) -> str:
    return (
        f"cluster {cluster!r} was created again (kube-system UID {known} -> {asked}): forgot "
        f"the previous cluster's {users} piece users and {holds} GPU holds"
    )
