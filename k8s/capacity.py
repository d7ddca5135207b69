"""The capacity plan: can the cluster hold every pod of the rollout, old and new, at its peak?

Where it sits: pure functions called by activities/preflight.py with the rendered
LeaderWorkerSets, the nodes and the pods the API server lists. It places each planned pod (every
pod of every group, plus the surge groups an update creates first) on a node that satisfies its
node affinity, node selector and tolerations and has the requests free, largest pods first, each on
the fullest node it fits (best fit). What is free is a node's allocatable minus the requests of
the pods that stay; the pods of the LeaderWorkerSets we are about to replace do not stay, so they
are not counted twice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from k8s.quantity import (
    NANO,
    Resources,
    add,
    fits,
    format_resources,
    parse_quantity,
    parse_resources,
    subtract,
    total,
    units,
)
from spec.activity_io import CapacityPlan, NodePlan, PodDemand
from spec.rollout import RoleName

GPU = "nvidia.com/gpu"
# How many nodes a plan a rollout records lists at most, besides the ones it places pods on
# (`shortened`).
NODES_SHOWN = 16
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
_TERMINAL_PHASES = ("Succeeded", "Failed")
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class PlannedPod:
    """A pod the rollout will create, with what the scheduler needs to know to place it."""

    name: str
    role: RoleName
    group: int
    requests: Resources
    pod_spec: Mapping[str, Any]
    surge: bool = False


@dataclass(frozen=True)
class RolePlan:
    """One role's LeaderWorkerSet as rendered, and what its update may cost."""

    role: RoleName
    lws: Mapping[str, Any]
    surge_groups: int = 0
    may_drop_surge: bool = True


@dataclass
class _Node:
    name: str
    labels: Mapping[str, str]
    taints: Sequence[Mapping[str, Any]]
    allocatable: Resources
    allocated: Resources
    problem: str
    placed: list[str] = field(default_factory=list)
    free: Resources = field(default_factory=dict)


def pod_requests(pod_spec: Mapping[str, Any]) -> Resources:
    """What the scheduler reserves for a pod: its containers plus native sidecars, or its largest
    regular init container (with the sidecars started before it) if that is more; plus one pod."""
    containers = [_container_requests(c) for c in pod_spec.get("containers") or []]
    running = total(containers)
    sidecars: Resources = {}
    peak_init: Resources = {}
    for init in pod_spec.get("initContainers") or []:
        requests = _container_requests(init)
        if init.get("restartPolicy") == "Always":
            add(sidecars, requests)
            continue
        during = total([sidecars, requests])
        for name, amount in during.items():
            peak_init[name] = max(peak_init.get(name, 0), amount)
    add(running, sidecars)
    for name, amount in peak_init.items():
        running[name] = max(running.get(name, 0), amount)
    running["pods"] = NANO
    return running


def _container_requests(container: Mapping[str, Any]) -> Resources:
    resources = container.get("resources") or {}
    # Kubernetes defaults a missing request to the limit.
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return parse_resources(merged)


def lws_pods(role: RoleName, lws: Mapping[str, Any], surge_groups: int = 0) -> list[PlannedPod]:
    """Every pod of a rendered LeaderWorkerSet, named as the LWS controller names them."""
    name = str(lws["metadata"]["name"])
    spec = lws.get("spec") or {}
    template = spec.get("leaderWorkerTemplate") or {}
    size = int(template.get("size", 1))
    worker = (template.get("workerTemplate") or {}).get("spec") or {}
    leader = (template.get("leaderTemplate") or {}).get("spec") or worker
    replicas = int(spec.get("replicas", 1))
    pods = []
    for group in range(replicas + surge_groups):
        for index in range(size):
            pod_spec = leader if index == 0 else worker
            pods.append(
                PlannedPod(
                    name=f"{name}-{group}" if index == 0 else f"{name}-{group}-{index}",
                    role=role,
                    group=group,
                    requests=pod_requests(pod_spec),
                    pod_spec=pod_spec,
                    surge=group >= replicas,
                )
            )
    return pods


def resolve_surge(value: int | str, replicas: int) -> int:
    """An int-or-percent maxSurge as groups (percentages round up, as Kubernetes does)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def resolve_unavailable(value: int | str, replicas: int) -> int:
    """An int-or-percent maxUnavailable as groups (percentages round down)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(replicas * int(value[:-1]) / 100)
    return int(value)


def template_changed(rendered: Any, existing: Any) -> bool:
    """Whether applying `rendered` would change `existing` (which has server defaults filled in):
    every field we render must already hold the same value."""
    if isinstance(rendered, Mapping):
        if not isinstance(existing, Mapping):
            return True
        return any(template_changed(v, existing.get(k)) for k, v in rendered.items())
    if isinstance(rendered, list):
        if not isinstance(existing, list) or len(rendered) != len(existing):
            return True
        return any(template_changed(r, e) for r, e in zip(rendered, existing, strict=True))
    if isinstance(rendered, (int, float)) and isinstance(existing, str):
        return str(rendered) != existing
    return bool(rendered != existing)


def node_matches(pod_spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Required node affinity and nodeSelector, as the scheduler evaluates them."""
    selector = pod_spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    affinity = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not affinity:
        return True
    terms = affinity.get("nodeSelectorTerms") or []
    return any(_term_matches(term, labels) for term in terms)


def _term_matches(term: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    expressions = term.get("matchExpressions") or []
    if not expressions and not term.get("matchFields"):
        return False
    return all(_expression_matches(e, labels) for e in expressions)


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = expression.get("key", "")
    operator = expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    value = labels.get(key)
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if operator == "Gt" else left < right
    return False


def tolerated(pod_spec: Mapping[str, Any], taints: Sequence[Mapping[str, Any]]) -> list[str]:
    """The node's scheduling-blocking taints this pod does not tolerate."""
    tolerations = pod_spec.get("tolerations") or []
    blocking = []
    for taint in taints:
        if taint.get("effect") not in _BLOCKING_EFFECTS:
            continue
        if not any(_tolerates(t, taint) for t in tolerations):
            blocking.append(f"{taint.get('key')}:{taint.get('effect')}")
    return blocking


def _tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration.get("key") == taint.get("key")
    return bool(
        toleration.get("key") == taint.get("key")
        and (toleration.get("value") or "") == (taint.get("value") or "")
    )


def _node_problem(node: Mapping[str, Any]) -> str:
    if (node.get("spec") or {}).get("unschedulable"):
        return "cordoned (unschedulable)"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return f"not Ready ({ready.get('reason') or ready.get('status')})"
    return ""


def pod_holds_resources(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName")) and (
        (pod.get("status") or {}).get("phase") not in _TERMINAL_PHASES
    )


def plan_capacity(
    roles: Sequence[RolePlan],
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    namespace: str,
    held: Mapping[str, Resources] | None = None,
    salt: str = "",
) -> CapacityPlan:
    """Place every pod of `roles` (each role's LWS replaces the pods it has now) on `nodes`,
    given the `pods` that exist and what other rollouts `held` per node (their reservations,
    k8s/reservations.py); drop a role's surge when it does not fit and the strategy can
    roll without it, refuse otherwise. `salt` breaks ties between equally full nodes (by a
    hash, rather than by name), so rollouts planning at once do not all reach for one node."""
    replaced = {str(r.lws["metadata"]["name"]) for r in roles}
    pods = list(pods)
    held = held or {}
    state = _nodes(nodes, pods, namespace, replaced, held)
    notes: list[str] = []
    surge = {r.role: r.surge_groups for r in roles}
    dropped: dict[str, int] = {}
    planned = _place(roles, surge, state, salt)
    if not _all_placed(planned) and any(surge.values()):
        without = {r.role: (0 if r.may_drop_surge else r.surge_groups) for r in roles}
        retry_state = _nodes(nodes, pods, namespace, replaced, held)
        retry = _place(roles, without, retry_state, salt)
        if _all_placed(retry):
            for role in roles:
                if surge[role.role] and role.may_drop_surge:
                    dropped[role.role] = 0
                    notes.append(
                        f"{role.role}: no room for {surge[role.role]} surge group(s) during the "
                        "update; rolling without surge (maxUnavailable allows it)"
                    )
            planned, state, surge = retry, retry_state, without
    for role in roles:
        if surge[role.role] and not role.may_drop_surge and not _all_placed(planned):
            notes.append(
                f"{role.role}: the strategy needs {surge[role.role]} surge group(s) "
                "(maxUnavailable is 0), which do not fit"
            )
    return _plan(planned, state, dropped, notes)


def fits_empty_nodes(
    roles: Sequence[RolePlan], nodes: Iterable[Mapping[str, Any]], namespace: str
) -> bool:
    """Whether `roles` would fit on `nodes` with nothing else on them: no other pod, no other
    rollout's hold. It is what waiting for capacity (budgets.capacityWait) could at best free,
    so a plan that fails this is refused at once rather than waited for."""
    return plan_capacity(roles, nodes, [], namespace).fits


def _nodes(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    namespace: str,
    replaced: set[str],
    held: Mapping[str, Resources],
) -> list[_Node]:
    state = {}
    for node in nodes:
        metadata = node.get("metadata") or {}
        status = node.get("status") or {}
        name = str(metadata.get("name"))
        state[name] = _Node(
            name=name,
            labels=metadata.get("labels") or {},
            taints=(node.get("spec") or {}).get("taints") or [],
            allocatable=parse_resources(status.get("allocatable") or status.get("capacity")),
            allocated=dict(held.get(name, {})),
            problem=_node_problem(node),
        )
    for pod in pods:
        if not pod_holds_resources(pod):
            continue
        metadata = pod.get("metadata") or {}
        ours = (
            metadata.get("namespace") == namespace
            and (metadata.get("labels") or {}).get(LWS_NAME_LABEL) in replaced
        )
        node_state = state.get(str(pod["spec"]["nodeName"]))
        if node_state is not None and not ours:
            add(node_state.allocated, pod_requests(pod.get("spec") or {}))
    for node_state in state.values():
        node_state.free = subtract(node_state.allocatable, node_state.allocated)
    return sorted(state.values(), key=lambda n: n.name)


def _place(
    roles: Sequence[RolePlan], surge: Mapping[RoleName, int], nodes: list[_Node], salt: str = ""
) -> list[tuple[PlannedPod, str | None, str]]:
    pods = [p for r in roles for p in lws_pods(r.role, r.lws, surge[r.role])]
    order = sorted(pods, key=lambda p: (-p.requests.get(GPU, 0), p.surge, p.name))
    placements: dict[str, tuple[str | None, str]] = {}
    for pod in order:
        candidates = []
        reasons: dict[str, int] = {}
        for node in nodes:
            reason = _why_not(pod, node)
            if reason:
                reasons[reason] = reasons.get(reason, 0) + 1
                continue
            candidates.append(node)
        if not candidates:
            detail = "; ".join(f"{count} node(s): {r}" for r, count in sorted(reasons.items()))
            placements[pod.name] = (None, detail or "no nodes")
            continue
        # Best fit: the node with the fewest GPUs (then CPUs) left, to keep whole nodes free.
        best = min(
            candidates,
            key=lambda n: (
                n.free.get(GPU, 0), n.free.get("cpu", 0),
                _tie_break(salt, n.name),
            ),
        )
        best.free = subtract(best.free, pod.requests)
        best.placed.append(pod.name)
        placements[pod.name] = (best.name, "")
    return [(p, *placements[p.name]) for p in pods]


def _tie_break(salt: str, name: str) -> str:
    return hashlib.sha256(f"{salt}/{name}".encode()).hexdigest() if salt else name


def _why_not(pod: PlannedPod, node: _Node) -> str:
    if node.problem:
        return node.problem
    if not node_matches(pod.pod_spec, node.labels):
        return "node affinity/selector does not match"
    blocking = tolerated(pod.pod_spec, node.taints)
    if blocking:
        return f"untolerated taint {', '.join(blocking)}"
    short = fits(pod.requests, node.free)
    if short:
        return "insufficient " + ", ".join(short)
    return ""


def _all_placed(planned: Sequence[tuple[PlannedPod, str | None, str]]) -> bool:
    return all(node is not None for _, node, _ in planned)


def _eligible(node: _Node, planned: Sequence[tuple[PlannedPod, str | None, str]]) -> bool:
    """A node our pods may use: healthy, and matching at least one planned pod's placement rules."""
    return not node.problem and any(
        node_matches(p.pod_spec, node.labels) and not tolerated(p.pod_spec, node.taints)
        for p, _, _ in planned
    )


def _plan(
    planned: Sequence[tuple[PlannedPod, str | None, str]],
    nodes: Sequence[_Node],
    dropped: Mapping[str, int],
    notes: list[str],
) -> CapacityPlan:
    asked = total(p.requests for p, _, _ in planned)
    asked.pop("pods", None)
    eligible = [n for n in nodes if _eligible(n, planned)]
    # By name: `node in eligible` compared whole nodes, field by field, for every pair.
    eligible_names = {n.name for n in eligible}
    available = total(subtract(n.allocatable, n.allocated) for n in eligible)
    available.pop("pods", None)
    node_plans = []
    for node in nodes:
        ok = node.name in eligible_names
        reason = node.problem or ("" if ok else "node affinity/selector or taints exclude it")
        node_plans.append(
            NodePlan(
                name=node.name,
                eligible=ok,
                reason=reason,
                allocatable=format_resources(node.allocatable),
                allocated=format_resources(node.allocated),
                free_before=format_resources(subtract(node.allocatable, node.allocated)),
                placed=list(node.placed),
                free_after=format_resources(node.free),
            )
        )
    demands = [
        PodDemand(
            name=p.name,
            role=p.role,
            group=p.group,
            surge=p.surge,
            requests=format_resources({k: v for k, v in p.requests.items() if k != "pods"}),
            node=node,
            reason=reason,
        )
        for p, node, reason in planned
    ]
    return CapacityPlan(
        fits=_all_placed(planned),
        gpu_resource=GPU,
        gpus_asked=units(asked.get(GPU, 0)),
        gpus_available=units(available.get(GPU, 0)),
        asked=format_resources(asked),
        available=format_resources(available),
        pods=demands,
        nodes=node_plans,
        max_surge=dict(dropped),
        notes=notes,
    )


def shortened(plan: CapacityPlan, limit: int = NODES_SHOWN) -> CapacityPlan:
    """`plan` as a rollout records it: every node it places a pod on, then up to `limit` nodes
    more, eligible ones with the most GPUs free after placement first (so the refusal's
    "largest free" node is among them), then the rest, in name order; the count of the others
    in `nodes_not_shown`. A plan lists every node of the cluster, and it travels in activity
    results and failures into the workflow's history: 51 KB at 100 nodes, 500 KB at 1,000,
    where Temporal warns at 512 KB and fails a payload over 2 MB."""
    if len(plan.nodes) <= limit:
        return plan
    placed = {node.name for node in plan.nodes if node.placed}
    others = sorted(
        (node for node in plan.nodes if node.name not in placed),
        key=lambda node: (
            node.eligible, parse_quantity(node.free_after.get(plan.gpu_resource, "0")), node.name
        ),
        reverse=True,
    )
    shown = placed | {node.name for node in others[:limit]}
    return plan.model_copy(update={
        "nodes": [node for node in plan.nodes if node.name in shown],
        "nodes_not_shown": plan.nodes_not_shown + len(plan.nodes) - len(shown),
    })
