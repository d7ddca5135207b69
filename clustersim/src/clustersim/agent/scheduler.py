"""The scheduler: binds pending pods (schedulerName default-scheduler) to nodes that fit them.

Feasibility and the FailedScheduling text come from `fit`. A pod that fits nowhere gets
PodScheduled=False (reason Unschedulable) and a FailedScheduling event, and is tried again when a
node changes or a pod releases capacity. Binding uses the pods/binding subresource when the API
server serves it, else sets spec.nodeName.
"""

from __future__ import annotations

from clustersim.agent.context import AgentContext
from clustersim.agent.fit import NodeUsage, place_pod, pod_requests
from clustersim.agent.kubeclient import PODS, ApiError
from clustersim.agent.meta import (
    KubeObject,
    find_condition,
    is_terminating,
    key_of,
    rfc3339,
    split_key,
    uid_of,
)
from clustersim.agent.workqueue import Controller

DEFAULT_SCHEDULER = "default-scheduler"


def _wants_us(pod: KubeObject) -> bool:
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName", DEFAULT_SCHEDULER) in (DEFAULT_SCHEDULER, "", None)
        and not is_terminating(pod)
        and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )


def _holds_capacity(pod: KubeObject) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


class Scheduler(Controller):
    name = "default-scheduler"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._assumed: dict[str, tuple[str, KubeObject]] = {}
        self._unschedulable: set[str] = set()
        ctx.informers.pods.add_handler(self._on_pod)
        ctx.informers.nodes.add_handler(self._on_node)

    def _on_pod(self, kind: str, pod: KubeObject, old: KubeObject | None) -> None:
        if (pod.get("spec") or {}).get("nodeName"):
            self._assumed.pop(uid_of(pod), None)
        if kind != "DELETED" and _wants_us(pod):
            self.queue.add(key_of(pod))
        freed = kind == "DELETED" or (
            old is not None
            and (
                (is_terminating(pod) and not is_terminating(old))
                or (not _holds_capacity(pod) and _holds_capacity(old))
            )
        )
        if freed:
            self._retry_unschedulable()

    def _on_node(self, kind: str, node: KubeObject, old: KubeObject | None) -> None:
        if (
            old is None
            or node.get("spec") != old.get("spec")
            or (
                (node.get("status") or {}).get("allocatable")
                != (old.get("status") or {}).get("allocatable")
            )
            or kind in ("ADDED", "DELETED")
        ):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in list(self._unschedulable):
            self.queue.add(key)

    def _usages(self) -> list[NodeUsage]:
        usages = {n["metadata"]["name"]: NodeUsage.of(n) for n in self.ctx.informers.nodes.items()}
        counted: set[str] = set()
        for pod in self.ctx.informers.pods.items():
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name in usages and _holds_capacity(pod):
                usages[node_name].add_pod(pod_requests(pod))
                counted.add(uid_of(pod))
        for uid, (node_name, pod) in self._assumed.items():
            if uid not in counted and node_name in usages:
                usages[node_name].add_pod(pod_requests(pod))
        return [usages[name] for name in sorted(usages)]

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        pod = self.ctx.informers.pods.get(namespace, name)
        if pod is None or not _wants_us(pod) or uid_of(pod) in self._assumed:
            self._unschedulable.discard(key)
            return None
        placement = place_pod(pod, self._usages())
        if placement.node_name is None:
            self._unschedulable.add(key)
            await self._mark_unschedulable(pod, placement.message)
            return None
        self._unschedulable.discard(key)
        self._assumed[uid_of(pod)] = (placement.node_name, pod)
        try:
            await self.ctx.client.bind_pod(namespace, name, uid_of(pod), placement.node_name)
        except ApiError:
            self._assumed.pop(uid_of(pod), None)
            raise
        self.ctx.recorder.emit(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {placement.node_name}",
            component=self.name,
        )
        return None

    async def _set_scheduled_condition(self, pod: KubeObject, condition: KubeObject) -> None:
        conditions = [
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") != "PodScheduled"
        ]
        conditions.append(condition)
        status: KubeObject = {"conditions": conditions}
        if not (pod.get("status") or {}).get("phase"):
            status["phase"] = "Pending"
        try:
            updated = await self.ctx.client.patch_status(
                PODS, pod["metadata"]["name"], status, pod["metadata"]["namespace"]
            )
        except ApiError as error:
            if error.not_found:
                return
            raise
        self.ctx.informers.pods.upsert(updated)

    async def _mark_unschedulable(self, pod: KubeObject, message: str) -> None:
        self.ctx.recorder.emit(pod, "Warning", "FailedScheduling", message, component=self.name)
        current = find_condition((pod.get("status") or {}).get("conditions"), "PodScheduled")
        if (
            current is not None
            and current.get("status") == "False"
            and current.get("message") == message
        ):
            return
        await self._set_scheduled_condition(
            pod,
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(),
            },
        )
