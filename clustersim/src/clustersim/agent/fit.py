"""Scheduling decisions without I/O: effective pod requests, node filters, the FitError text.

This mirrors kube-scheduler's default filter chain (NodeUnschedulable, NodeName, TaintToleration,
NodeAffinity, NodeResourcesFit; the first failing filter decides a node's reason) and its message
format, e.g. "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are
available: 2 No preemption victims found for incoming pod."
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clustersim.agent.meta import KubeObject, name_of
from clustersim.agent.quantity import ResourceList, add_into, max_into, parse_resource_list
from clustersim.agent.selectors import node_matches_pod_affinity, untolerated_taint

_FIRST_RESOURCES = ("cpu", "memory", "ephemeral-storage")
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def container_requests(container: dict[str, Any]) -> ResourceList:
    """Requests, with limits standing in for absent requests (API defaulting does the same)."""
    resources = container.get("resources") or {}
    limits = parse_resource_list(resources.get("limits"))
    requests = parse_resource_list(resources.get("requests"))
    for name, amount in limits.items():
        requests.setdefault(name, amount)
    return requests


def pod_requests(pod: KubeObject) -> ResourceList:
    """Effective pod requests: app containers plus sidecars, or the largest init step if bigger.

    Restartable init containers (native sidecars) keep running, so they add to everything after
    them; a regular init container runs alone beside the sidecars started before it.
    """
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for container in spec.get("containers") or []:
        add_into(total, container_requests(container))
    init_peak: ResourceList = {}
    sidecars: ResourceList = {}
    for container in spec.get("initContainers") or []:
        requests = container_requests(container)
        if container.get("restartPolicy") == "Always":
            add_into(total, requests)
            add_into(sidecars, requests)
            step = dict(sidecars)
        else:
            step = dict(requests)
            add_into(step, sidecars)
        max_into(init_peak, step)
    max_into(total, init_peak)
    return total


@dataclass
class NodeUsage:
    """One node as the scheduler sees it: allocatable and what bound pods already request."""

    node: KubeObject
    allocatable: ResourceList
    requested: ResourceList = field(default_factory=dict)
    pods: int = 0

    @classmethod
    def of(cls, node: KubeObject) -> NodeUsage:
        status = node.get("status") or {}
        allocatable = parse_resource_list(status.get("allocatable") or status.get("capacity"))
        return cls(node=node, allocatable=allocatable)

    def add_pod(self, requests: ResourceList) -> None:
        add_into(self.requested, requests)
        self.pods += 1


@dataclass(frozen=True)
class NodeVerdict:
    reasons: tuple[str, ...]
    resolvable: bool

    @property
    def fits(self) -> bool:
        return not self.reasons


def _insufficient(requests: ResourceList, usage: NodeUsage) -> list[str]:
    reasons: list[str] = []
    if usage.pods + 1 > usage.allocatable.get("pods", 0) // 1000:
        reasons.append("Too many pods")
    names = [n for n in _FIRST_RESOURCES if n in requests]
    names += sorted(n for n in requests if n not in _FIRST_RESOURCES and n != "pods")
    for name in names:
        wanted = requests[name]
        if wanted <= 0:
            continue
        free = usage.allocatable.get(name, 0) - usage.requested.get(name, 0)
        if wanted > free:
            reasons.append(f"Insufficient {name}")
    return reasons


def filter_node(pod: KubeObject, requests: ResourceList, usage: NodeUsage) -> NodeVerdict:
    """The default filter chain for one node; stops at the first failing filter."""
    node = usage.node
    spec = pod.get("spec") or {}
    if (node.get("spec") or {}).get("unschedulable"):
        tolerated = any(
            t.get("key") == "node.kubernetes.io/unschedulable"
            for t in spec.get("tolerations") or []
        )
        if not tolerated:
            return NodeVerdict(("node(s) were unschedulable",), resolvable=False)
    wanted_node = spec.get("nodeName")
    if wanted_node and wanted_node != name_of(node):
        return NodeVerdict(("node(s) didn't match the requested node name",), resolvable=False)
    taint = untolerated_taint(pod, node, ("NoSchedule", "NoExecute"))
    if taint is not None:
        text = f"{{{taint.get('key', '')}: {taint.get('value', '')}}}"
        return NodeVerdict((f"node(s) had untolerated taint {text}",), resolvable=False)
    if not node_matches_pod_affinity(pod, node):
        return NodeVerdict(("node(s) didn't match Pod's node affinity/selector",), resolvable=False)
    reasons = _insufficient(requests, usage)
    return NodeVerdict(tuple(reasons), resolvable=True)


def _histogram(counts: Counter[str]) -> str:
    return ", ".join(sorted(f"{count} {reason}" for reason, count in counts.items()))


def fit_error_message(verdicts: dict[str, NodeVerdict]) -> str:
    """kube-scheduler's FitError text, including the preemption postfilter's summary."""
    total = len(verdicts)
    if total == 0:
        return "no nodes available to schedule pods"
    reasons: Counter[str] = Counter()
    preemption: Counter[str] = Counter()
    for verdict in verdicts.values():
        for reason in verdict.reasons:
            reasons[reason] += 1
        preemption[NO_VICTIMS if verdict.resolvable else NOT_HELPFUL] += 1
    return (
        f"0/{total} nodes are available: {_histogram(reasons)}. "
        f"preemption: 0/{total} nodes are available: {_histogram(preemption)}."
    )


def _score(requests: ResourceList, usage: NodeUsage) -> float:
    """LeastAllocated over cpu, memory and GPUs: spread load like the default scorer."""
    scores: list[float] = []
    for name in ("cpu", "memory", "nvidia.com/gpu"):
        capacity = usage.allocatable.get(name, 0)
        if capacity <= 0:
            continue
        used = usage.requested.get(name, 0) + requests.get(name, 0)
        scores.append(max(0.0, (capacity - used) / capacity))
    return sum(scores) / len(scores) if scores else 0.0


@dataclass(frozen=True)
class Placement:
    node_name: str | None
    message: str


def place_pod(pod: KubeObject, usages: list[NodeUsage]) -> Placement:
    """Pick the best feasible node, or explain (FitError text) why none fits."""
    requests = pod_requests(pod)
    verdicts = {name_of(u.node): filter_node(pod, requests, u) for u in usages}
    feasible = [u for u in usages if verdicts[name_of(u.node)].fits]
    if not feasible:
        return Placement(None, fit_error_message(verdicts))
    best = min(feasible, key=lambda u: (-_score(requests, u), name_of(u.node)))
    return Placement(name_of(best.node), "")
