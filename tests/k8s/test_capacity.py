"""The capacity plan: every pod of every group, plus update surge, against what nodes can hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import manifests
from k8s.capacity import (
    NODES_SHOWN,
    RolePlan,
    fits_empty_nodes,
    plan_capacity,
    pod_requests,
    shortened,
    template_changed,
)
from k8s.quantity import NANO, QuantityError, format_quantity, parse_quantity
from k8s.reservations import node_level_reason
from spec import RolloutSpec, load_spec
from spec.rollout import ROLES
from tests.activities.builders import NAMESPACE, node, pod

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TWO_NODES = [node("h200-node-0"), node("h200-node-1")]


def example(name: str) -> RolloutSpec:
    return load_spec(EXAMPLES / name)


def plans(spec: RolloutSpec, surge: int = 0, may_drop: bool = True) -> list[RolePlan]:
    return [RolePlan(role, manifests.render_role(spec, role), surge, may_drop) for role in ROLES]


def test_as_shipped_values_ask_24_gpus_where_two_nodes_have_16() -> None:
    plan = plan_capacity(plans(example("wide-ep-lws-as-shipped.yaml")), TWO_NODES, [], NAMESPACE)
    assert not plan.fits
    assert plan.gpus_asked == 24
    assert plan.gpus_available == 16
    unplaced = [p for p in plan.pods if p.node is None]
    assert len(unplaced) == 1
    assert "insufficient nvidia.com/gpu" in unplaced[0].reason
    text = plan.render()
    assert "24 GPUs asked, 16 available" in text
    assert "h200-node-0" in text and "UNPLACED" in text


def test_the_16_gpu_shape_fits_two_nodes() -> None:
    plan = plan_capacity(plans(example("wide-ep-lws.yaml")), TWO_NODES, [], NAMESPACE)
    assert plan.fits
    assert plan.gpus_asked == 16
    assert sorted(len(n.placed) for n in plan.nodes) == [1, 2]
    assert all(n.free_after["nvidia.com/gpu"] == "0" for n in plan.nodes)


def test_pods_of_other_workloads_hold_their_gpus() -> None:
    busy = pod(
        name="someone-else", namespace="team-b", lws="other", requests={"nvidia.com/gpu": "4"}
    )
    plan = plan_capacity(plans(example("wide-ep-lws.yaml")), TWO_NODES, [busy], NAMESPACE)
    assert not plan.fits
    assert plan.gpus_available == 12
    assert plan.nodes[0].allocated["nvidia.com/gpu"] == "4"


def test_busy_gpus_would_be_free_on_empty_nodes_but_too_few_gpus_never_are() -> None:
    """What waiting for capacity (budgets.capacityWait) could free: every other pod's GPUs."""
    busy = pod(
        name="someone-else", namespace="team-b", lws="other", requests={"nvidia.com/gpu": "8"}
    )
    assert not plan_capacity(plans(example("wide-ep-lws.yaml")), TWO_NODES, [busy], NAMESPACE).fits

    assert fits_empty_nodes(plans(example("wide-ep-lws.yaml")), TWO_NODES, NAMESPACE)
    assert not fits_empty_nodes(
        plans(example("wide-ep-lws-as-shipped.yaml")), TWO_NODES, NAMESPACE
    )


def test_our_own_pods_being_replaced_are_not_counted_twice() -> None:
    spec = example("wide-ep-lws.yaml")
    ours = [
        pod(
            name=f"{spec.model_service.lws_name('prefill')}-0",
            lws=spec.model_service.lws_name("prefill"),
            node="h200-node-0",
            requests={"nvidia.com/gpu": "8"},
        ),
        pod(
            name=f"{spec.model_service.lws_name('decode')}-0",
            lws=spec.model_service.lws_name("decode"),
            node="h200-node-1",
            requests={"nvidia.com/gpu": "4"},
        ),
    ]
    plan = plan_capacity(plans(spec), TWO_NODES, ours, NAMESPACE)
    assert plan.fits


def test_finished_pods_hold_nothing() -> None:
    done = pod(
        name="job",
        namespace="batch",
        lws="job",
        requests={"nvidia.com/gpu": "8"},
        phase="Succeeded",
    )
    assert plan_capacity(plans(example("wide-ep-lws.yaml")), TWO_NODES, [done], NAMESPACE).fits


def test_node_affinity_excludes_nodes_without_the_accelerator_label() -> None:
    nodes = [node("h200-node-0"), node("a100-node-1", labels={"gpu.nvidia.com/model": "A100"})]
    plan = plan_capacity(plans(example("wide-ep-lws.yaml")), nodes, [], NAMESPACE)
    assert not plan.fits
    assert plan.gpus_available == 8
    excluded = next(n for n in plan.nodes if n.name == "a100-node-1")
    assert not excluded.eligible


def test_cordoned_and_not_ready_nodes_take_nothing() -> None:
    nodes = [node("h200-node-0", unschedulable=True), node("h200-node-1", ready="False")]
    plan = plan_capacity(plans(example("wide-ep-lws.yaml")), nodes, [], NAMESPACE)
    assert not plan.fits
    assert plan.gpus_available == 0
    assert {n.reason for n in plan.nodes} == {
        "cordoned (unschedulable)",
        "not Ready (KubeletReady)",
    }


def test_untolerated_taints_exclude_a_node() -> None:
    taint = {"key": "dedicated", "value": "training", "effect": "NoSchedule"}
    nodes = [node("h200-node-0", taints=[taint]), node("h200-node-1")]
    assert not plan_capacity(plans(example("wide-ep-lws.yaml")), nodes, [], NAMESPACE).fits


def test_surge_that_does_not_fit_is_dropped_when_the_strategy_allows() -> None:
    plan = plan_capacity(plans(example("wide-ep-lws.yaml"), surge=1), TWO_NODES, [], NAMESPACE)
    assert plan.fits
    assert plan.max_surge == {"prefill": 0, "decode": 0}
    assert any("rolling without surge" in note for note in plan.notes)
    assert not any(p.surge for p in plan.pods)


def test_surge_that_does_not_fit_is_refused_when_max_unavailable_is_zero() -> None:
    plan = plan_capacity(
        plans(example("wide-ep-lws.yaml"), surge=1, may_drop=False), TWO_NODES, [], NAMESPACE
    )
    assert not plan.fits
    assert plan.max_surge == {}
    assert any(p.surge and p.node is None for p in plan.pods)
    assert any("maxUnavailable is 0" in note for note in plan.notes)


def test_surge_that_fits_is_kept() -> None:
    three = [*TWO_NODES, node("h200-node-2"), node("h200-node-3")]
    plan = plan_capacity(plans(example("wide-ep-lws.yaml"), surge=1), three, [], NAMESPACE)
    assert plan.fits and plan.max_surge == {}
    assert sum(1 for p in plan.pods if p.surge) == 3


def test_native_sidecars_add_to_the_pod_and_init_containers_take_their_peak() -> None:
    spec = {
        "initContainers": [
            {"name": "setup", "resources": {"requests": {"cpu": "4"}}},
            {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
        ],
        "containers": [{"name": "main", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}],
    }
    requests = pod_requests(spec)
    # The setup container alone needs more than main + proxy (3).
    assert requests["cpu"] == parse_quantity("4")
    assert format_quantity("memory", requests["memory"]) == "1Gi"


def test_template_changed_ignores_server_defaults() -> None:
    rendered = {"spec": {"containers": [{"name": "vllm", "image": "v2"}]}}
    live = {
        "spec": {"containers": [{"name": "vllm", "image": "v2", "terminationMessagePath": "x"}]}
    }
    assert not template_changed(rendered, live)
    assert template_changed({"spec": {"containers": [{"name": "vllm", "image": "v3"}]}}, live)


def test_quantities_are_exact() -> None:
    assert parse_quantity("500m") + parse_quantity("500m") == parse_quantity("1")
    assert parse_quantity("512Gi") == 512 * 2**30 * NANO
    assert parse_quantity("1.5Ki") == parse_quantity("1536")
    assert parse_quantity("2e3") == parse_quantity("2k")
    assert format_quantity("memory", parse_quantity("2Ti")) == "2Ti"
    assert format_quantity("cpu", parse_quantity("1500m")) == "1500m"


def test_quantities_finer_than_a_nano_unit_round_up_as_kubernetes_does() -> None:
    assert parse_quantity("1n") == 1
    assert parse_quantity("0.5n") == 1
    assert parse_quantity("1.2n") == 2
    assert format_quantity("cpu", parse_quantity("0.5n")) == "1e-09"


def test_a_string_that_is_no_quantity_is_refused() -> None:
    with pytest.raises(QuantityError, match="'8 GPUs' is not a Kubernetes quantity"):
        parse_quantity("8 GPUs")


def busy_cluster(
    nodes: int, least: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`nodes` 8-GPU nodes, node i with `least` + i % (8 - `least`) GPUs in use by another
    team's pod."""
    cluster = [node(f"h200-node-{i:02d}") for i in range(nodes)]
    used = [least + i % (8 - least) for i in range(nodes)]
    busy = [
        pod(name=f"other-{i}", namespace="team-b", lws=f"other-{i}", node=f"h200-node-{i:02d}",
            requests={"nvidia.com/gpu": str(used[i])})
        for i in range(nodes) if used[i]
    ]
    return cluster, busy


def test_a_recorded_plan_lists_the_nodes_it_uses_and_those_with_most_gpus_free() -> None:
    cluster, busy = busy_cluster(40)
    full = plan_capacity(plans(example("wide-ep-lws.yaml")), cluster, busy, NAMESPACE)
    short = shortened(full)
    placed = {n.name for n in full.nodes if n.placed}
    shown = {n.name for n in short.nodes}
    assert full.fits and placed and placed <= shown
    assert len(shown) == len(placed) + NODES_SHOWN
    assert short.nodes_not_shown == 40 - len(shown)
    free = {n.name: parse_quantity(n.free_after["nvidia.com/gpu"]) for n in full.nodes}
    assert min(free[name] for name in shown - placed) >= max(
        free[name] for name in set(free) - shown
    )
    assert [n.name for n in short.nodes] == sorted(shown)  # in name order, as the full plan
    assert short.pods == full.pods and short.fits == full.fits
    assert f"... and {short.nodes_not_shown} more node(s)" in short.render()


def test_a_plan_of_few_nodes_is_recorded_whole() -> None:
    cluster, busy = busy_cluster(NODES_SHOWN)
    full = plan_capacity(plans(example("wide-ep-lws.yaml")), cluster, busy, NAMESPACE)
    assert shortened(full) == full
    assert "more node(s)" not in full.render()


def test_a_recorded_refusal_names_the_same_node_as_the_whole_plan() -> None:
    cluster, busy = busy_cluster(40, least=1)  # no node has a whole 8-GPU node's room
    full = plan_capacity(plans(example("wide-ep-lws-as-shipped.yaml")), cluster, busy, NAMESPACE)
    assert not full.fits
    assert node_level_reason(shortened(full)) == node_level_reason(full)
    assert "largest free: h200-node-" in node_level_reason(full)
