"""GPU reservations in the capacity plan: what other rollouts hold, and what this one will hold.

Where it sits: pure functions between activities/capacity_hold.py (which reads the cluster
workflow's reservations and asks it to hold a plan) and k8s/capacity.py (which places
pods node by node). A reservation stands for the pods of the LeaderWorkerSets it covers: while it
is held, those pods are left out of the nodes' allocation and the reservation's node quantities
are counted instead, so a rollout whose pods are coming up is counted once, never twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from datetime import datetime
from typing import Any

from k8s.capacity import GPU, LWS_NAME_LABEL, RolePlan
from k8s.quantity import Resources, add, format_quantity, format_resources, parse_resources
from spec.activity_io import CapacityPlan
from spec.cluster_io import Reservation


def covered_lws(roles: Sequence[RolePlan]) -> list[str]:
    """`namespace/name` of the LeaderWorkerSets a plan of `roles` stands for."""
    return [
        f"{role.lws['metadata'].get('namespace', '')}/{role.lws['metadata']['name']}"
        for role in roles
    ]


def others_in_force(
    reservations: Iterable[Reservation], owner: str, now: datetime
) -> list[Reservation]:
    """The reservations of owners other than `owner` that still count. A hold whose expiry has
    come counts for nothing, though the cluster workflow has not ended it yet: its timer is a
    moment behind, or the hold is of a cluster put aside (expired when taken back), whose query
    has no clock to tell."""
    return [r for r in reservations if r.owner != owner and r.expires_at > now]


def held_by_others(
    reservations: Iterable[Reservation], owner: str, now: datetime
) -> tuple[dict[str, Resources], set[str]]:
    """Per node, what the other owners' reservations in force hold; and the LWSes they cover."""
    held: dict[str, Resources] = {}
    covers: set[str] = set()
    for reservation in others_in_force(reservations, owner, now):
        covers.update(reservation.covers)
        for node, quantities in reservation.nodes.items():
            add(held.setdefault(node, {}), parse_resources(quantities))
    return held, covers


def uncovered_pods(
    pods: Iterable[Mapping[str, Any]], covers: Set[str]
) -> list[Mapping[str, Any]]:
    """The pods a reservation does not already stand for."""
    kept = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        lws = (metadata.get("labels") or {}).get(LWS_NAME_LABEL)
        if lws is not None and f"{metadata.get('namespace', '')}/{lws}" in covers:
            continue
        kept.append(pod)
    return kept


def reserved_nodes(plan: CapacityPlan) -> dict[str, dict[str, str]]:
    """Per node, the requests of the pods the plan placed there (pod counts left out)."""
    nodes: dict[str, Resources] = {}
    for pod in plan.pods:
        if pod.node is None:
            continue
        add(nodes.setdefault(pod.node, {}), parse_resources(pod.requests))
    return {node: format_resources(quantities) for node, quantities in sorted(nodes.items())}


def node_level_reason(plan: CapacityPlan) -> str:
    """Why the plan does not fit, for people: the GPUs the largest unplaced pod needs on one
    node, and the node with the most GPUs still free once the plan's other pods are placed
    ("needs a node with 8 free nvidia.com/gpu; largest free: h200-node-7 with 4"). Free before
    placement would name a node this rollout's own pods fill: "h200-node-2 with 8", refused."""
    unplaced = [pod for pod in plan.pods if pod.node is None]
    if not unplaced:
        return "everything fits"
    largest = max(unplaced, key=lambda pod: parse_resources(pod.requests).get(GPU, 0))
    needs = parse_resources(largest.requests).get(GPU, 0)
    eligible = [node for node in plan.nodes if node.eligible]
    if not eligible:
        return f"pod {largest.name} needs a node with {format_quantity(GPU, needs)} free {GPU}; " \
            "no node is eligible (affinity, selector, taints or health)"
    best = max(
        eligible,
        key=lambda node: (parse_resources(node.free_after).get(GPU, 0), node.name),
    )
    free = parse_resources(best.free_after).get(GPU, 0)
    placed = sum(1 for pod in plan.pods if pod.node is not None)
    return (
        f"pod {largest.name} needs a node with {format_quantity(GPU, needs)} free {GPU}; "
        f"largest free: {best.name} with {format_quantity(GPU, free)}"
        + (f" (after this rollout's {placed} other pod(s) are placed)" if placed else "")
    )
