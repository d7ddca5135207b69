"""ReplicaSet controller: keeps `replicas` active pods named `<replicaset>-<random>`.

Scale-down prefers pods that are unscheduled, not running, not ready, then the newest, as the real
controller ranks them. Status counts replicas, fullyLabeledReplicas, readyReplicas and
availableReplicas (honouring minReadySeconds times the time scale).
"""

from __future__ import annotations

from clustersim.agent.context import AgentContext
from clustersim.agent.controllers.common import is_active, is_available, is_ready, pod_from_template
from clustersim.agent.kubeclient import PODS, REPLICASETS, ApiError
from clustersim.agent.meta import (
    KubeObject,
    generation_of,
    is_controlled_by,
    is_terminating,
    key_of,
    labels_of,
    name_of,
    namespace_of,
    object_key,
    split_key,
)
from clustersim.agent.selectors import label_selector_matches
from clustersim.agent.workqueue import Controller

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_rank(pod: KubeObject) -> tuple[int, int, int, str]:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    created = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
    # Newer pods go first: negate by sorting on the reversed timestamp string.
    return (
        1 if spec.get("nodeName") else 0,
        _PHASE_RANK.get(str(status.get("phase")), 0),
        1 if is_ready(pod) else 0,
        "".join(chr(0x10FFFF - ord(c)) for c in created),
    )


class ReplicaSetController(Controller):
    name = "replicaset-controller"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        ctx.informers.replicasets.add_handler(lambda _k, rs, _o: self.queue.add(key_of(rs)))
        ctx.informers.pods.add_handler(self._on_pod)

    def _on_pod(self, _: str, pod: KubeObject, __: KubeObject | None) -> None:
        for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "ReplicaSet":
                self.queue.add(object_key(namespace_of(pod), str(ref.get("name"))))

    def owned_pods(self, rs: KubeObject) -> list[KubeObject]:
        return [
            pod
            for pod in self.ctx.informers.pods.items(namespace_of(rs))
            if is_controlled_by(pod, rs)
        ]

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        rs = self.ctx.informers.replicasets.get(namespace, name)
        if rs is None or is_terminating(rs):
            return None
        spec = rs.get("spec") or {}
        wanted = int(spec.get("replicas", 1))
        pods = self.owned_pods(rs)
        active = [p for p in pods if is_active(p)]
        if len(active) < wanted:
            template = spec.get("template") or {}
            for _ in range(wanted - len(active)):
                pod = pod_from_template(template, rs, generate_name=f"{name}-")
                created = await self.ctx.client.create(PODS, pod, namespace)
                self.ctx.informers.pods.upsert(created)
                self.ctx.recorder.emit(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {name_of(created)}",
                    component=self.name,
                )
        elif len(active) > wanted:
            for pod in sorted(active, key=_deletion_rank)[: len(active) - wanted]:
                try:
                    gone = await self.ctx.client.delete(PODS, name_of(pod), namespace)
                except ApiError as error:
                    if not error.not_found:
                        raise
                    gone = None
                if gone is not None:
                    self.ctx.informers.pods.upsert(gone)
                self.ctx.recorder.emit(
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {name_of(pod)}",
                    component=self.name,
                )
        return await self._update_status(rs)

    async def _update_status(self, rs: KubeObject) -> float | None:
        spec = rs.get("spec") or {}
        pods = [p for p in self.owned_pods(rs) if is_active(p)]
        min_ready = self.ctx.scale.delay(float(spec.get("minReadySeconds") or 0))
        selector = spec.get("selector") or {}
        available = [p for p in pods if is_available(p, min_ready)]
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(
                1 for p in pods if label_selector_matches(selector, labels_of(p))
            ),
            "readyReplicas": sum(1 for p in pods if is_ready(p)),
            "availableReplicas": len(available),
            "observedGeneration": generation_of(rs),
        }
        current = rs.get("status") or {}
        if any(current.get(k, 0) != v for k, v in status.items()):
            updated = await self.ctx.client.patch_status(
                REPLICASETS, name_of(rs), status, namespace_of(rs)
            )
            self.ctx.informers.replicasets.upsert(updated)
        waiting = [p for p in pods if is_ready(p) and p not in available]
        return min_ready if waiting else None
