"""StatefulSet controller: ordered pods `<sts>-<ordinal>`, rolling updates with partition, status.

Pods carry `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
`controller-revision-hash` (a ControllerRevision per template). OrderedReady creates one pod at a
time once the previous is Running and Ready; Parallel creates them together. RollingUpdate
replaces outdated pods from the highest ordinal down to `partition`, one at a time, waiting for
each to be healthy (rollingUpdate.maxUnavailable is honoured only with the
MaxUnavailableStatefulSet feature gate, as on a real cluster). Failed pods are recreated.
Pods are created as they are; admission (the LWS pod webhook, see `clustersim.lws_pods`) is the
API server's business, as with kube-controller-manager's StatefulSet controller.
"""

from __future__ import annotations

import copy

from clustersim.agent.context import AgentContext
from clustersim.agent.controllers.common import (
    int_or_percent,
    is_active,
    is_ready,
    is_running_and_ready,
    pod_from_template,
)
from clustersim.agent.kubeclient import CONTROLLERREVISIONS, PODS, STATEFULSETS, ApiError
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
    owner_reference,
    split_key,
    stable_hash,
)
from clustersim.agent.workqueue import Controller

REVISION_LABEL = "controller-revision-hash"


def ordinal_of(pod_name: str, sts_name: str) -> int | None:
    prefix = f"{sts_name}-"
    if not pod_name.startswith(prefix):
        return None
    tail = pod_name[len(prefix) :]
    return int(tail) if tail.isdigit() else None


class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        ctx.informers.statefulsets.add_handler(lambda _k, s, _o: self.queue.add(key_of(s)))
        ctx.informers.pods.add_handler(self._on_pod)
        ctx.informers.revisions.add_handler(self._on_revision)

    def _on_pod(self, _: str, pod: KubeObject, __: KubeObject | None) -> None:
        for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "StatefulSet":
                self.queue.add(object_key(namespace_of(pod), str(ref.get("name"))))

    def _on_revision(self, _: str, revision: KubeObject, __: KubeObject | None) -> None:
        for ref in (revision.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "StatefulSet":
                self.queue.add(object_key(namespace_of(revision), str(ref.get("name"))))

    # ---- revisions ----------------------------------------------------------------------

    def _revisions(self, sts: KubeObject) -> list[KubeObject]:
        return [
            r
            for r in self.ctx.informers.revisions.items(namespace_of(sts))
            if is_controlled_by(r, sts)
        ]

    async def _ensure_revision(self, sts: KubeObject) -> tuple[str, list[KubeObject]]:
        template = (sts.get("spec") or {}).get("template") or {}
        digest = stable_hash(template)
        name = f"{name_of(sts)}-{digest}"
        revisions = self._revisions(sts)
        if any(name_of(r) == name for r in revisions):
            return name, revisions
        number = max((int(r.get("revision") or 0) for r in revisions), default=0) + 1
        selector = ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        body = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": name,
                "namespace": namespace_of(sts),
                "labels": {**selector, "controller.kubernetes.io/hash": digest},
                "ownerReferences": [owner_reference(sts)],
            },
            "data": {"spec": {"template": copy.deepcopy(template)}},
            "revision": number,
        }
        try:
            created = await self.ctx.client.create(CONTROLLERREVISIONS, body, namespace_of(sts))
        except ApiError as error:
            if not error.conflict:
                raise
            created = await self.ctx.client.get(CONTROLLERREVISIONS, name, namespace_of(sts))
        self.ctx.informers.revisions.upsert(created)
        return name, [*revisions, created]

    # ---- pods ---------------------------------------------------------------------------

    def _new_pod(
        self, sts: KubeObject, ordinal: int, revision: str, template: KubeObject
    ) -> KubeObject:
        name = f"{name_of(sts)}-{ordinal}"
        pod = pod_from_template(
            template,
            sts,
            name=name,
            extra_labels={
                "statefulset.kubernetes.io/pod-name": name,
                "apps.kubernetes.io/pod-index": str(ordinal),
                REVISION_LABEL: revision,
            },
        )
        pod["spec"]["hostname"] = name
        service = (sts.get("spec") or {}).get("serviceName")
        if service:
            pod["spec"]["subdomain"] = service
        return pod

    async def _create(
        self, sts: KubeObject, ordinal: int, revision: str, template: KubeObject
    ) -> None:
        pod = self._new_pod(sts, ordinal, revision, template)
        try:
            created = await self.ctx.client.create(PODS, pod, namespace_of(sts))
        except ApiError as error:
            if error.conflict:
                return
            raise
        self.ctx.informers.pods.upsert(created)
        self.ctx.recorder.emit(
            sts,
            "Normal",
            "SuccessfulCreate",
            f"create Pod {name_of(created)} in StatefulSet {name_of(sts)} successful",
            component=self.name,
        )

    async def _delete(self, sts: KubeObject, pod: KubeObject) -> None:
        try:
            gone = await self.ctx.client.delete(
                PODS, name_of(pod), namespace_of(pod), uid=pod["metadata"]["uid"]
            )
        except ApiError as error:
            if error.not_found or error.conflict:
                return
            raise
        if gone is not None:
            self.ctx.informers.pods.upsert(gone)
        self.ctx.recorder.emit(
            sts,
            "Normal",
            "SuccessfulDelete",
            f"delete Pod {name_of(pod)} in StatefulSet {name_of(sts)} successful",
            component=self.name,
        )

    def _template_for(
        self, revision: str, revisions: list[KubeObject], sts: KubeObject
    ) -> KubeObject:
        for candidate in revisions:
            if name_of(candidate) == revision:
                template = ((candidate.get("data") or {}).get("spec") or {}).get("template")
                if template:
                    return dict(template)
        return dict((sts.get("spec") or {}).get("template") or {})

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        sts = self.ctx.informers.statefulsets.get(namespace, name)
        if sts is None or is_terminating(sts):
            return None
        spec = sts.get("spec") or {}
        update_revision, revisions = await self._ensure_revision(sts)
        status = sts.get("status") or {}
        current_revision = str(status.get("currentRevision") or update_revision)
        replicas = int(spec.get("replicas", 1))
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        monotonic = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = {
            ordinal: pod
            for pod in self.ctx.informers.pods.items(namespace)
            if is_controlled_by(pod, sts)
            and (ordinal := ordinal_of(name_of(pod), name)) is not None
        }
        wanted = range(start, start + replicas)
        for ordinal in wanted:
            pod = pods.get(ordinal)
            if pod is None:
                revision = update_revision
                if rolling and ordinal - start < partition:
                    revision = current_revision
                await self._create(
                    sts, ordinal, revision, self._template_for(revision, revisions, sts)
                )
                if monotonic:
                    return await self._update_status(sts, update_revision, current_revision)
                continue
            if (pod.get("status") or {}).get("phase") == "Failed" and not is_terminating(pod):
                await self._delete(sts, pod)
                if monotonic:
                    return await self._update_status(sts, update_revision, current_revision)
                continue
            if monotonic and not is_running_and_ready(pod):
                return await self._update_status(sts, update_revision, current_revision)
        condemned = sorted((o for o in pods if o not in wanted), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if is_terminating(pod):
                if monotonic:
                    break
                continue
            await self._delete(sts, pod)
            if monotonic:
                break
        if rolling and not condemned:
            await self._roll(sts, pods, wanted, start + partition, update_revision)
        return await self._update_status(sts, update_revision, current_revision)

    async def _roll(
        self,
        sts: KubeObject,
        pods: dict[int, KubeObject],
        wanted: range,
        update_min: int,
        update_revision: str,
    ) -> None:
        gate = self.ctx.profile.feature_gates.get("MaxUnavailableStatefulSet", False)
        rolling = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
        budget = 1
        if gate:
            budget = max(1, int_or_percent(rolling.get("maxUnavailable", 1), len(wanted), False))
        unavailable = sum(1 for o in wanted if o not in pods or not is_running_and_ready(pods[o]))
        for ordinal in sorted((o for o in wanted if o >= update_min), reverse=True):
            pod = pods.get(ordinal)
            if pod is None:
                return
            outdated = labels_of(pod).get(REVISION_LABEL) != update_revision
            if outdated and not is_terminating(pod):
                if not gate or unavailable < budget:
                    await self._delete(sts, pod)
                    unavailable += 1
                    if not gate:
                        return
                    continue
                return
            if not is_running_and_ready(pod) and (not gate or unavailable >= budget):
                return

    async def _update_status(
        self, sts: KubeObject, update_revision: str, current_revision: str
    ) -> float | None:
        pods = [
            p
            for p in self.ctx.informers.pods.items(namespace_of(sts))
            if is_controlled_by(p, sts) and is_active(p)
        ]
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        updated = sum(1 for p in pods if labels_of(p).get(REVISION_LABEL) == update_revision)
        current = sum(1 for p in pods if labels_of(p).get(REVISION_LABEL) == current_revision)
        if updated == replicas and len(pods) == replicas:
            current_revision, current = update_revision, updated
        ready = sum(1 for p in pods if is_ready(p))
        status = {
            "observedGeneration": generation_of(sts),
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": 0,
        }
        existing = sts.get("status") or {}
        if any(existing.get(k) != v for k, v in status.items()):
            result = await self.ctx.client.patch_status(
                STATEFULSETS, name_of(sts), status, namespace_of(sts)
            )
            self.ctx.informers.statefulsets.upsert(result)
        await self._truncate_revisions(sts, {current_revision, update_revision}, pods)
        return None

    async def _truncate_revisions(
        self, sts: KubeObject, live: set[str], pods: list[KubeObject]
    ) -> None:
        limit = int((sts.get("spec") or {}).get("revisionHistoryLimit", 10))
        used = live | {labels_of(p).get(REVISION_LABEL, "") for p in pods}
        history = sorted(
            (r for r in self._revisions(sts) if name_of(r) not in used),
            key=lambda r: int(r.get("revision") or 0),
        )
        for revision in history[: max(0, len(history) - limit)]:
            try:
                await self.ctx.client.delete(
                    CONTROLLERREVISIONS, name_of(revision), namespace_of(revision)
                )
            except ApiError as error:
                if not error.not_found:
                    raise
            self.ctx.informers.revisions.forget(revision)
