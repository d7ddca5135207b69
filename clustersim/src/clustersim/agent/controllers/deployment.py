"""Deployment controller: ReplicaSets per pod template, rolling updates, status and conditions.

The new ReplicaSet is `<deployment>-<pod-template-hash>`; RollingUpdate honours maxSurge (25%)
and maxUnavailable (25%); Recreate scales the old ReplicaSets to zero first. Conditions follow
the real controller: Available (MinimumReplicasAvailable) and Progressing (NewReplicaSetCreated,
ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded).
"""

from __future__ import annotations

import copy

from clustersim.agent.context import AgentContext
from clustersim.agent.controllers.common import int_or_percent
from clustersim.agent.kubeclient import DEPLOYMENTS, REPLICASETS, ApiError
from clustersim.agent.meta import (
    KubeObject,
    annotations_of,
    find_condition,
    generation_of,
    is_controlled_by,
    is_terminating,
    key_of,
    name_of,
    namespace_of,
    object_key,
    owner_reference,
    parse_time,
    rfc3339,
    set_condition,
    split_key,
    stable_hash,
    utc_now,
)
from clustersim.agent.workqueue import Controller

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def _template_without_hash(template: KubeObject) -> KubeObject:
    clean = copy.deepcopy(template)
    labels = (clean.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return clean


def _replicas(rs: KubeObject) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def _status_count(rs: KubeObject, field: str) -> int:
    return int((rs.get("status") or {}).get(field) or 0)


def _revision(rs: KubeObject) -> int:
    try:
        return int(annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


class DeploymentController(Controller):
    name = "deployment-controller"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        ctx.informers.deployments.add_handler(lambda _k, d, _o: self.queue.add(key_of(d)))
        ctx.informers.replicasets.add_handler(self._on_replicaset)

    def _on_replicaset(self, _: str, rs: KubeObject, __: KubeObject | None) -> None:
        for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Deployment":
                self.queue.add(object_key(namespace_of(rs), str(ref.get("name"))))

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        deployment = self.ctx.informers.deployments.get(namespace, name)
        if deployment is None or is_terminating(deployment):
            return None
        spec = deployment.get("spec") or {}
        owned = [
            rs
            for rs in self.ctx.informers.replicasets.items(namespace)
            if is_controlled_by(rs, deployment) and not is_terminating(rs)
        ]
        collision = int((deployment.get("status") or {}).get("collisionCount") or 0)
        template_hash = stable_hash(_template_without_hash(spec.get("template") or {}), collision)
        new_rs = next(
            (
                rs
                for rs in owned
                if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == template_hash
            ),
            None,
        )
        old = [rs for rs in owned if rs is not new_rs]
        replicas = int(spec.get("replicas", 1))
        strategy = spec.get("strategy") or {}
        if not spec.get("paused"):
            if strategy.get("type") == "Recreate":
                new_rs = await self._recreate(deployment, new_rs, old, template_hash, replicas)
            else:
                new_rs = await self._rolling(deployment, new_rs, old, template_hash, replicas)
        await self._cleanup(deployment, old)
        return await self._update_status(deployment, new_rs, owned, replicas)

    def _limits(self, deployment: KubeObject, replicas: int) -> tuple[int, int]:
        rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
        surge = int_or_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = int_or_percent(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    async def _create_rs(
        self, deployment: KubeObject, template_hash: str, replicas: int, revision: int
    ) -> KubeObject:
        spec = deployment.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
        name = f"{name_of(deployment)}-{template_hash}"
        surge, _ = self._limits(deployment, int(spec.get("replicas", 1)))
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace_of(deployment),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(spec.get("replicas", 1)),
                    "deployment.kubernetes.io/max-replicas": str(
                        int(spec.get("replicas", 1)) + surge
                    ),
                },
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        created = await self.ctx.client.create(REPLICASETS, body, namespace_of(deployment))
        self.ctx.informers.replicasets.upsert(created)
        self.ctx.recorder.emit(
            deployment,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled up replica set {name} from 0 to {replicas}",
            component=self.name,
        )
        return created

    async def _scale(self, deployment: KubeObject, rs: KubeObject, replicas: int) -> KubeObject:
        current = _replicas(rs)
        if current == replicas:
            return rs
        spec = deployment.get("spec") or {}
        updated = await self.ctx.client.merge_patch(
            REPLICASETS,
            name_of(rs),
            {
                "metadata": {
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": str(spec.get("replicas", 1))
                    }
                },
                "spec": {"replicas": replicas},
            },
            namespace_of(rs),
        )
        self.ctx.informers.replicasets.upsert(updated)
        direction = "up" if replicas > current else "down"
        self.ctx.recorder.emit(
            deployment,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {name_of(rs)} from {current} to {replicas}",
            component=self.name,
        )
        return updated

    def _next_revision(self, old: list[KubeObject]) -> int:
        return max((_revision(rs) for rs in old), default=0) + 1

    async def _ensure_revision(self, deployment: KubeObject, new_rs: KubeObject) -> None:
        revision = annotations_of(new_rs).get(REVISION, "1")
        if annotations_of(deployment).get(REVISION) != revision:
            updated = await self.ctx.client.merge_patch(
                DEPLOYMENTS,
                name_of(deployment),
                {"metadata": {"annotations": {REVISION: revision}}},
                namespace_of(deployment),
            )
            self.ctx.informers.deployments.upsert(updated)

    async def _rolling(
        self,
        deployment: KubeObject,
        new_rs: KubeObject | None,
        old: list[KubeObject],
        template_hash: str,
        replicas: int,
    ) -> KubeObject:
        surge, max_unavailable = self._limits(deployment, replicas)
        active_old = [rs for rs in old if _replicas(rs) > 0]
        if new_rs is None:
            current_total = sum(_replicas(rs) for rs in active_old)
            start = (
                replicas
                if not active_old
                else max(0, min(replicas, replicas + surge - current_total))
            )
            new_rs = await self._create_rs(
                deployment, template_hash, start, self._next_revision(old)
            )
        else:
            total = sum(_replicas(rs) for rs in old) + _replicas(new_rs)
            room = replicas + surge - total
            wanted = _replicas(new_rs)
            if not active_old:
                wanted = replicas
            elif room > 0:
                wanted = min(replicas, wanted + room)
            new_rs = await self._scale(deployment, new_rs, wanted)
        await self._ensure_revision(deployment, new_rs)
        if not active_old:
            return new_rs
        all_available = sum(_status_count(rs, "availableReplicas") for rs in [*old, new_rs])
        min_available = replicas - max_unavailable
        new_unavailable = _replicas(new_rs) - _status_count(new_rs, "availableReplicas")
        budget = all_available - min_available - max(0, new_unavailable)
        # Unhealthy old replicas can always go: they are not serving anyway.
        for rs in sorted(active_old, key=_revision):
            unhealthy = _replicas(rs) - _status_count(rs, "availableReplicas")
            if unhealthy > 0:
                rs = await self._scale(deployment, rs, _replicas(rs) - unhealthy)
        for rs in sorted(active_old, key=_revision):
            rs = self.ctx.informers.replicasets.get(namespace_of(rs), name_of(rs)) or rs
            if budget <= 0:
                break
            cut = min(budget, _replicas(rs))
            if cut > 0:
                await self._scale(deployment, rs, _replicas(rs) - cut)
                budget -= cut
        return new_rs

    async def _recreate(
        self,
        deployment: KubeObject,
        new_rs: KubeObject | None,
        old: list[KubeObject],
        template_hash: str,
        replicas: int,
    ) -> KubeObject | None:
        running_old = False
        for rs in old:
            if _replicas(rs) > 0:
                await self._scale(deployment, rs, 0)
            if _status_count(rs, "replicas") > 0:
                running_old = True
        if running_old:
            return new_rs
        if new_rs is None:
            new_rs = await self._create_rs(
                deployment, template_hash, replicas, self._next_revision(old)
            )
        else:
            new_rs = await self._scale(deployment, new_rs, replicas)
        await self._ensure_revision(deployment, new_rs)
        return new_rs

    async def _cleanup(self, deployment: KubeObject, old: list[KubeObject]) -> None:
        limit = int((deployment.get("spec") or {}).get("revisionHistoryLimit", 10))
        idle = sorted(
            (rs for rs in old if _replicas(rs) == 0 and _status_count(rs, "replicas") == 0),
            key=_revision,
        )
        for rs in idle[: max(0, len(idle) - limit)]:
            try:
                await self.ctx.client.delete(REPLICASETS, name_of(rs), namespace_of(rs))
            except ApiError as error:
                if not error.not_found:
                    raise

    async def _update_status(
        self,
        deployment: KubeObject,
        new_rs: KubeObject | None,
        owned: list[KubeObject],
        replicas: int,
    ) -> float | None:
        if new_rs is not None and all(name_of(new_rs) != name_of(rs) for rs in owned):
            owned = [*owned, new_rs]
        fresh = [
            self.ctx.informers.replicasets.get(namespace_of(rs), name_of(rs)) or rs for rs in owned
        ]
        new_fresh = next(
            (rs for rs in fresh if new_rs is not None and name_of(rs) == name_of(new_rs)), None
        )
        total = sum(_status_count(rs, "replicas") for rs in fresh)
        available = sum(_status_count(rs, "availableReplicas") for rs in fresh)
        updated_replicas = _status_count(new_fresh, "replicas") if new_fresh else 0
        _, max_unavailable = self._limits(deployment, replicas)
        status = dict(deployment.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or []]
        if available >= replicas - max_unavailable:
            set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                heartbeat_field="lastUpdateTime",
            )
        else:
            set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                heartbeat_field="lastUpdateTime",
            )
        requeue: float | None = None
        rs_name = name_of(new_fresh) if new_fresh else ""
        complete = (
            new_fresh is not None
            and updated_replicas == replicas
            and total == replicas
            and _status_count(new_fresh, "availableReplicas") == replicas
        )
        progressing = find_condition(conditions, "Progressing")
        deadline = float((deployment.get("spec") or {}).get("progressDeadlineSeconds") or 600)
        if complete:
            set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                heartbeat_field="lastUpdateTime",
            )
        elif (
            progressing is not None
            and progressing.get("reason") == "ProgressDeadlineExceeded"
            and f'"{rs_name}"' in str(progressing.get("message"))
        ):
            pass  # timed out: stays so until this rollout completes or a new one starts
        else:
            changed = (
                progressing is None
                or progressing.get("reason") == "NewReplicaSetAvailable"
                or status.get("updatedReplicas") != updated_replicas
                or status.get("availableReplicas") != available
            )
            last = parse_time((progressing or {}).get("lastUpdateTime"))
            elapsed = (utc_now() - last).total_seconds() if last and not changed else 0.0
            wall_deadline = self.ctx.scale.delay(deadline)
            if elapsed >= wall_deadline:
                set_condition(
                    conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    heartbeat_field="lastUpdateTime",
                )
            elif changed:
                reason = "ReplicaSetUpdated"
                if progressing is None:
                    reason = "NewReplicaSetCreated"
                message = (
                    f'Created new replica set "{rs_name}"'
                    if reason == "NewReplicaSetCreated"
                    else f'ReplicaSet "{rs_name}" is progressing.'
                )
                set_condition(
                    conditions,
                    "Progressing",
                    "True",
                    reason,
                    message,
                    heartbeat_field="lastUpdateTime",
                )
                # Progress moves the deadline even when the condition text stays the same.
                (find_condition(conditions, "Progressing") or {})["lastUpdateTime"] = rfc3339()
                requeue = wall_deadline + 0.05
            else:
                requeue = max(0.05, wall_deadline - elapsed)
        wanted = {
            "observedGeneration": generation_of(deployment),
            "replicas": total,
            "updatedReplicas": updated_replicas,
            "readyReplicas": sum(_status_count(rs, "readyReplicas") for rs in fresh),
            "availableReplicas": available,
            "unavailableReplicas": max(0, replicas - available),
            "conditions": conditions,
        }
        if any(status.get(k) != v for k, v in wanted.items()):
            result = await self.ctx.client.patch_status(
                DEPLOYMENTS, name_of(deployment), wanted, namespace_of(deployment)
            )
            self.ctx.informers.deployments.upsert(result)
        return requeue
