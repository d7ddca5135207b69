"""GPU reservations in the capacity plan: other rollouts' holds count, their pods not twice."""

from __future__ import annotations

from datetime import UTC, datetime

from k8s.capacity import plan_capacity
from k8s.reservations import (
    covered_lws,
    held_by_others,
    node_level_reason,
    reserved_nodes,
    uncovered_pods,
)
from spec.cluster_io import Reservation
from tests.activities.builders import NAMESPACE, node, pod
from tests.k8s.test_capacity import example, plans

THREE_NODES = [node("h200-node-0"), node("h200-node-1"), node("h200-node-2")]


NOW = datetime(2029, 6, 1, tzinfo=UTC)


def holding(
    owner: str, nodes: dict[str, dict[str, str]], covers: list[str],
    expires_at: datetime = datetime(2030, 1, 1, tzinfo=UTC),
) -> Reservation:
    return Reservation(
        owner=owner, run_id="run", target_id=f"c/ns/{owner}", nodes=nodes, covers=covers,
        expires_at=expires_at,
    )


def test_a_plan_reserves_what_it_placed_node_by_node() -> None:
    roles = plans(example("wide-ep-lws.yaml"))
    plan = plan_capacity(roles, THREE_NODES, [], NAMESPACE)
    held = reserved_nodes(plan)
    assert sum(int(q["nvidia.com/gpu"]) for q in held.values()) == 16
    assert covered_lws(roles) == [
        f"{NAMESPACE}/{role.lws['metadata']['name']}" for role in roles
    ]


def test_what_another_rollout_holds_is_not_free_and_the_refusal_names_the_node() -> None:
    roles = plans(example("wide-ep-lws.yaml"))
    first = plan_capacity(roles, THREE_NODES, [], NAMESPACE)
    other = holding("rollout/first", reserved_nodes(first), ["team-a/first-lws"])
    held, covers = held_by_others([other], owner="rollout/second", now=NOW)
    assert covers == {"team-a/first-lws"}

    second = plan_capacity(roles, THREE_NODES, [], NAMESPACE, held)

    assert not second.fits
    assert second.gpus_available == 8
    reason = node_level_reason(second)
    assert reason.startswith("pod ") and "needs a node with" in reason
    assert "free nvidia.com/gpu; largest free: h200-node-" in reason
    # The one node with 8 free GPUs took this rollout's own 8-GPU pod: nothing is left for the
    # pod that does not fit, and the sentence says so rather than "with 8".
    assert reason.endswith(" with 0 (after this rollout's 1 other pod(s) are placed)"), reason
    # The owner's own hold never counts against itself.
    mine, _ = held_by_others([other], owner="rollout/first", now=NOW)
    assert mine == {}


def test_a_hold_whose_expiry_has_come_holds_nothing() -> None:
    """Its owner disappeared; the cluster workflow ends it at its next turn (or, for a cluster
    put aside, when taken back), and a planner meanwhile must not refuse for its GPUs."""
    gone = holding(
        "rollout/gone", {"h200-node-0": {"nvidia.com/gpu": "8"}}, ["team-a/gone-lws"],
        expires_at=NOW,
    )
    live = holding("rollout/live", {"h200-node-1": {"nvidia.com/gpu": "8"}}, ["team-a/live"])
    held, covers = held_by_others([gone, live], owner="rollout/mine", now=NOW)
    assert list(held) == ["h200-node-1"]
    assert covers == {"team-a/live"}


def test_pods_a_hold_stands_for_are_not_counted_twice() -> None:
    running = pod(
        name="first-lws-0", namespace="team-a", lws="first-lws",
        requests={"nvidia.com/gpu": "8"},
    )
    unrelated = pod(name="x", namespace="team-b", lws="other", requests={"nvidia.com/gpu": "1"})
    assert uncovered_pods([running, unrelated], {"team-a/first-lws"}) == [unrelated]
