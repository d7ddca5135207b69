"""LeaderWorkerSet controller, v0.7.0 semantics (clustersim/src/clustersim/agent/README.md).

Objects: a leader StatefulSet `<lws>` (pods `<lws>-<group>`), one worker StatefulSet per group
`<lws>-<group>` owned by its leader pod (pods `<lws>-<group>-<worker>`, ordinals from 1), a headless
Service `<lws>`, and a ControllerRevision per template revision (truncated to the current one
once an update completes). Rolling updates go from the highest group down through the leader
StatefulSet's partition (see lws_rollout). RecreateGroupOnPodRestart deletes the leader pod when
any pod of its group restarts a container or is deleted, which recreates the whole group.
Status: replicas, readyReplicas, updatedReplicas, hpaPodSelector and the mutually exclusive
Available / Progressing / UpdateInProgress conditions, each change announced by an Event.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from clustersim.agent.context import AgentContext
from clustersim.agent.controllers.common import (
    int_or_percent,
    is_running_and_ready,
    restart_count,
)
from clustersim.agent.controllers.lws_rollout import GroupState, plan_rollout
from clustersim.agent.kubeclient import (
    CONTROLLERREVISIONS,
    LEADERWORKERSETS,
    PODS,
    SERVICES,
    STATEFULSETS,
    ApiError,
)
from clustersim.agent.meta import (
    KubeObject,
    find_condition,
    is_controlled_by,
    is_terminating,
    key_of,
    labels_of,
    merge_patch_diff,
    name_of,
    namespace_of,
    object_key,
    owner_reference,
    set_condition,
    split_key,
    stable_hash,
    uid_of,
)
from clustersim.agent.selectors import selector_string
from clustersim.agent.workqueue import Controller
from clustersim.lws_pods import (
    GROUP_INDEX_LABEL,
    GROUP_KEY_LABEL,
    LEADER_NAME_ANNOTATION,
    NAME_LABEL,
    REPLICAS_ANNOTATION,
    SIZE_ANNOTATION,
    TEMPLATE_HASH_LABEL,
    WORKER_INDEX_LABEL,
    group_key,
)

_CONDITIONS = {
    "Available": ("AllGroupsReady", "All replicas are ready"),
    "Progressing": ("GroupsProgressing", "Replicas are progressing"),
    "UpdateInProgress": ("GroupsUpdating", "Rolling Upgrade is in progress"),
}


@dataclass
class _Spec:
    replicas: int
    size: int
    template: KubeObject
    restart_policy: str
    max_unavailable: int
    max_surge: int
    partition: int
    startup_policy: str
    subdomain_policy: str

    @classmethod
    def of(cls, lws: KubeObject) -> _Spec:
        spec = lws.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("leaderWorkerTemplate") or {}
        rolling = (spec.get("rolloutStrategy") or {}).get("rollingUpdateConfiguration") or {}
        policy = str(template.get("restartPolicy") or "RecreateGroupOnPodRestart")
        return cls(
            replicas=replicas,
            size=int(template.get("size", 1)),
            template=template,
            restart_policy="None" if policy == "Default" else policy,
            max_unavailable=int_or_percent(rolling.get("maxUnavailable", 1), replicas, False),
            max_surge=int_or_percent(rolling.get("maxSurge", 0), replicas, True),
            partition=int(rolling.get("partition") or 0),
            startup_policy=str(spec.get("startupPolicy") or "LeaderCreated"),
            subdomain_policy=str(
                (spec.get("networkConfig") or {}).get("subdomainPolicy") or "Shared"
            ),
        )


def revision_hash(lws: KubeObject) -> str:
    spec = lws.get("spec") or {}
    return stable_hash(
        {
            "leaderWorkerTemplate": spec.get("leaderWorkerTemplate") or {},
            "networkConfig": spec.get("networkConfig") or {},
        }
    )


def _with_labels(
    template: KubeObject, labels: dict[str, str], annotations: dict[str, str]
) -> KubeObject:
    result = copy.deepcopy(template)
    metadata = result.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}
    return result


class LeaderWorkerSetController(Controller):
    name = "lws-controller"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        ctx.informers.lws.add_handler(lambda _k, lws, _o: self.queue.add(key_of(lws)))
        for informer in (ctx.informers.statefulsets, ctx.informers.pods, ctx.informers.revisions):
            informer.add_handler(self._on_member)

    def _on_member(self, _: str, obj: KubeObject, __: KubeObject | None) -> None:
        owner = labels_of(obj).get(NAME_LABEL)
        if owner:
            self.queue.add(object_key(namespace_of(obj), owner))

    # ---- revisions and the headless service ----------------------------------------------

    def _revisions(self, lws: KubeObject) -> list[KubeObject]:
        return [
            r
            for r in self.ctx.informers.revisions.items(namespace_of(lws))
            if is_controlled_by(r, lws)
        ]

    async def _ensure_revision(self, lws: KubeObject, digest: str) -> None:
        name = f"{name_of(lws)}-{digest}"
        revisions = self._revisions(lws)
        if any(name_of(r) == name for r in revisions):
            return
        spec = lws.get("spec") or {}
        body = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": name,
                "namespace": namespace_of(lws),
                "labels": {NAME_LABEL: name_of(lws), TEMPLATE_HASH_LABEL: digest},
                "ownerReferences": [owner_reference(lws)],
            },
            "data": {
                "spec": {
                    "leaderWorkerTemplate": copy.deepcopy(spec.get("leaderWorkerTemplate") or {}),
                    "networkConfig": copy.deepcopy(spec.get("networkConfig") or {}),
                }
            },
            "revision": max((int(r.get("revision") or 0) for r in revisions), default=0) + 1,
        }
        try:
            created = await self.ctx.client.create(CONTROLLERREVISIONS, body, namespace_of(lws))
        except ApiError as error:
            if not error.conflict:
                raise
            return
        self.ctx.informers.revisions.upsert(created)

    def _template_of_revision(self, lws: KubeObject, digest: str) -> KubeObject:
        for revision in self._revisions(lws):
            if labels_of(revision).get(TEMPLATE_HASH_LABEL) == digest:
                template = ((revision.get("data") or {}).get("spec") or {}).get(
                    "leaderWorkerTemplate"
                )
                if template:
                    return dict(template)
        return dict((lws.get("spec") or {}).get("leaderWorkerTemplate") or {})

    async def _ensure_service(self, lws: KubeObject, name: str, selector: dict[str, str]) -> None:
        if self.ctx.informers.services.get(namespace_of(lws), name) is not None:
            return
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": namespace_of(lws),
                "labels": {NAME_LABEL: name_of(lws)},
                "ownerReferences": [owner_reference(lws)],
            },
            "spec": {
                "clusterIP": "None",
                "selector": selector,
                "publishNotReadyAddresses": True,
            },
        }
        try:
            created = await self.ctx.client.create(SERVICES, body, namespace_of(lws))
        except ApiError as error:
            if not error.conflict:
                raise
            return
        self.ctx.informers.services.upsert(created)

    # ---- groups --------------------------------------------------------------------------

    def _leader_pods(self, lws: KubeObject, sts: KubeObject | None) -> dict[int, KubeObject]:
        leaders: dict[int, KubeObject] = {}
        if sts is None:
            return leaders
        for pod in self.ctx.informers.pods.items(namespace_of(lws)):
            if not is_controlled_by(pod, sts):
                continue
            index = labels_of(pod).get(GROUP_INDEX_LABEL, "")
            if index.isdigit():
                leaders[int(index)] = pod
        return leaders

    def _worker_sts(self, lws: KubeObject, leader: KubeObject) -> KubeObject | None:
        index = labels_of(leader).get(GROUP_INDEX_LABEL, "")
        sts = self.ctx.informers.statefulsets.get(namespace_of(lws), f"{name_of(lws)}-{index}")
        if sts is None or not is_controlled_by(sts, leader) or is_terminating(sts):
            return None
        return sts

    def _group_state(
        self, lws: KubeObject, spec: _Spec, digest: str, leader: KubeObject | None
    ) -> GroupState:
        """Ready: leader Running and Ready and its workers ready. Updated: leader (and worker
        StatefulSet, once it exists) on the current revision."""
        if leader is None or is_terminating(leader):
            return GroupState(ready=False, updated=False, exists=False)
        updated = labels_of(leader).get(TEMPLATE_HASH_LABEL) == digest
        ready = is_running_and_ready(leader)
        if spec.size > 1:
            workers = self._worker_sts(lws, leader)
            if workers is None:
                return GroupState(ready=False, updated=updated)
            updated = updated and labels_of(workers).get(TEMPLATE_HASH_LABEL) == digest
            ready_workers = int((workers.get("status") or {}).get("readyReplicas") or 0)
            ready = ready and ready_workers >= spec.size - 1
        return GroupState(ready=ready, updated=updated)

    def _group_pods(self, lws: KubeObject, leader: KubeObject) -> list[KubeObject]:
        workers = self._worker_sts(lws, leader)
        members = [leader]
        if workers is not None:
            members += [
                p
                for p in self.ctx.informers.pods.items(namespace_of(lws))
                if is_controlled_by(p, workers)
            ]
        return members

    # ---- reconcile -----------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        lws = self.ctx.informers.lws.get(namespace, name)
        if lws is None or is_terminating(lws):
            return None
        spec = _Spec.of(lws)
        digest = revision_hash(lws)
        await self._ensure_revision(lws, digest)
        if spec.subdomain_policy == "Shared":
            await self._ensure_service(lws, name, {NAME_LABEL: name})
        leader_sts = self.ctx.informers.statefulsets.get(namespace, name)
        if leader_sts is not None and not is_controlled_by(leader_sts, lws):
            leader_sts = None
        leaders = self._leader_pods(lws, leader_sts)
        sts_spec = (leader_sts or {}).get("spec") or {}
        sts_replicas = int(sts_spec.get("replicas", 0))
        groups = [self._group_state(lws, spec, digest, leaders.get(i)) for i in range(sts_replicas)]
        plan = plan_rollout(
            lws_replicas=spec.replicas,
            max_unavailable=spec.max_unavailable,
            max_surge=spec.max_surge,
            partition=spec.partition,
            leader_sts_exists=leader_sts is not None,
            template_changed=leader_sts is not None
            and labels_of(leader_sts).get(TEMPLATE_HASH_LABEL) != digest,
            sts_replicas=sts_replicas,
            sts_partition=int(
                ((sts_spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition")
                or 0
            ),
            groups=groups,
        )
        await self._write_leader_sts(lws, spec, digest, leader_sts, plan.replicas, plan.partition)
        for leader in leaders.values():
            if not is_terminating(leader):
                await self._ensure_workers(lws, spec, leader)
        if spec.restart_policy == "RecreateGroupOnPodRestart":
            for leader in leaders.values():
                if not is_terminating(leader):
                    await self._recreate_if_restarted(lws, leader)
        await self._update_status(lws, spec, digest, groups)
        return None

    async def _write_leader_sts(
        self,
        lws: KubeObject,
        spec: _Spec,
        digest: str,
        current: KubeObject | None,
        replicas: int,
        partition: int,
    ) -> None:
        name = name_of(lws)
        leader_template = (
            spec.template.get("leaderTemplate") or spec.template.get("workerTemplate") or {}
        )
        template = _with_labels(
            leader_template,
            {NAME_LABEL: name, WORKER_INDEX_LABEL: "0", TEMPLATE_HASH_LABEL: digest},
            {SIZE_ANNOTATION: str(spec.size)},
        )
        rolling: dict[str, Any] = {"partition": partition, "maxUnavailable": spec.max_unavailable}
        desired_spec = {
            "replicas": replicas,
            "selector": {"matchLabels": {NAME_LABEL: name, WORKER_INDEX_LABEL: "0"}},
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": template,
        }
        metadata: KubeObject = {
            "name": name,
            "namespace": namespace_of(lws),
            "labels": {NAME_LABEL: name, TEMPLATE_HASH_LABEL: digest},
            "annotations": {REPLICAS_ANNOTATION: str(spec.replicas)},
            "ownerReferences": [owner_reference(lws)],
        }
        if current is None:
            body = {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": metadata,
                "spec": desired_spec,
            }
            try:
                created = await self.ctx.client.create(STATEFULSETS, body, namespace_of(lws))
            except ApiError as error:
                if not error.conflict:
                    raise
                return
            self.ctx.informers.statefulsets.upsert(created)
            return
        current_spec = current.get("spec") or {}
        if labels_of(current).get(TEMPLATE_HASH_LABEL) != digest:
            patch = {
                "metadata": {"labels": metadata["labels"], "annotations": metadata["annotations"]},
                "spec": merge_patch_diff(
                    {k: current_spec.get(k) for k in desired_spec}, desired_spec
                ),
            }
            updated = await self.ctx.client.merge_patch(
                STATEFULSETS, name, patch, namespace_of(lws)
            )
            self.ctx.informers.statefulsets.upsert(updated)
            return
        current_rolling = (current_spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        if (
            current_spec.get("replicas") != replicas
            or current_rolling.get("partition") != partition
            or current_rolling.get("maxUnavailable") != spec.max_unavailable
        ):
            updated = await self.ctx.client.merge_patch(
                STATEFULSETS,
                name,
                {
                    "metadata": {"annotations": metadata["annotations"]},
                    "spec": {
                        "replicas": replicas,
                        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
                    },
                },
                namespace_of(lws),
            )
            self.ctx.informers.statefulsets.upsert(updated)

    async def _ensure_workers(self, lws: KubeObject, spec: _Spec, leader: KubeObject) -> None:
        namespace = namespace_of(lws)
        index = labels_of(leader).get(GROUP_INDEX_LABEL, "")
        name = f"{name_of(lws)}-{index}"
        existing = self.ctx.informers.statefulsets.get(namespace, name)
        if existing is not None:
            if is_controlled_by(existing, leader) or is_terminating(existing):
                return
            # Left over from a previous leader pod of this group: garbage to clear first.
            gone = await self.ctx.client.delete(
                STATEFULSETS, name, namespace, propagation_policy="Background"
            )
            if gone is None:
                self.ctx.informers.statefulsets.forget(existing)
            return
        leader_digest = labels_of(leader).get(TEMPLATE_HASH_LABEL, "")
        template_set = self._template_of_revision(lws, leader_digest)
        size = int(template_set.get("size", spec.size))
        if size <= 1:
            return
        if spec.startup_policy == "LeaderReady" and not is_running_and_ready(leader):
            return
        key = labels_of(leader).get(GROUP_KEY_LABEL) or group_key(namespace, name_of(leader))
        subdomain = name_of(lws) if spec.subdomain_policy == "Shared" else name
        labels = {
            NAME_LABEL: name_of(lws),
            GROUP_INDEX_LABEL: index,
            GROUP_KEY_LABEL: key,
            TEMPLATE_HASH_LABEL: leader_digest,
        }
        template = _with_labels(
            template_set.get("workerTemplate") or {},
            labels,
            {SIZE_ANNOTATION: str(size), LEADER_NAME_ANNOTATION: name_of(leader)},
        )
        body = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [owner_reference(leader)],
            },
            "spec": {
                "replicas": size - 1,
                "ordinals": {"start": 1},
                "selector": {"matchLabels": {NAME_LABEL: name_of(lws), GROUP_KEY_LABEL: key}},
                "serviceName": subdomain,
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "RollingUpdate"},
                "template": template,
            },
        }
        if spec.subdomain_policy != "Shared":
            await self._ensure_service(lws, name, {NAME_LABEL: name_of(lws), GROUP_KEY_LABEL: key})
        try:
            created = await self.ctx.client.create(STATEFULSETS, body, namespace)
        except ApiError as error:
            if not error.conflict:
                raise
            return
        self.ctx.informers.statefulsets.upsert(created)

    async def _recreate_if_restarted(self, lws: KubeObject, leader: KubeObject) -> None:
        for pod in self._group_pods(lws, leader):
            restarted = restart_count(pod) > 0
            deleted = pod is not leader and is_terminating(pod)
            if not (restarted or deleted):
                continue
            index = labels_of(leader).get(GROUP_INDEX_LABEL, "")
            who = "Leader" if pod is leader else "Worker"
            try:
                await self.ctx.client.delete(
                    PODS,
                    name_of(leader),
                    namespace_of(leader),
                    uid=uid_of(leader),
                    propagation_policy="Background",
                )
            except ApiError as error:
                if not (error.not_found or error.conflict):
                    raise
                return
            self.ctx.recorder.emit(
                lws,
                "Normal",
                "RecreateGroupOnPodRestart",
                f"{who} pod {name_of(pod)} failed, deleted leader pod {name_of(leader)} "
                f"to recreate group {index}",
                component=self.name,
            )
            return

    async def _update_status(
        self, lws: KubeObject, spec: _Spec, digest: str, groups: list[GroupState]
    ) -> None:
        name = name_of(lws)
        leader_sts = self.ctx.informers.statefulsets.get(namespace_of(lws), name)
        leaders = self._leader_pods(lws, leader_sts)
        fresh = [self._group_state(lws, spec, digest, leaders.get(i)) for i in range(spec.replicas)]
        existing_groups = sum(1 for i in range(spec.replicas) if i in leaders)
        ready = sum(1 for g in fresh if g.ready)
        updated = sum(1 for g in fresh if g.updated)
        tail = fresh[spec.partition :]
        if any(g.exists and not g.updated for g in tail):
            active = {"UpdateInProgress", "Progressing"}
        elif all(g.ready for g in fresh) and all(g.ready and g.updated for g in tail):
            active = {"Available"}
        else:
            active = {"Progressing"}
        status = dict(lws.get("status") or {})
        conditions = [dict(c) for c in status.get("conditions") or []]
        changed_to: list[str] = []
        for kind, (reason, message) in _CONDITIONS.items():
            wanted = "True" if kind in active else "False"
            existing = find_condition(conditions, kind)
            if existing is None and wanted == "False":
                continue
            was_true = existing is not None and existing.get("status") == "True"
            keep_reason = (
                existing.get("reason", reason) if existing and wanted == "False" else reason
            )
            keep_message = (
                existing.get("message", message) if existing and wanted == "False" else message
            )
            if (
                set_condition(conditions, kind, wanted, keep_reason, keep_message)
                and wanted == "True"
                and not was_true
            ):
                changed_to.append(kind)
        selector = selector_string({NAME_LABEL: name, WORKER_INDEX_LABEL: "0"})
        wanted_status = {
            "replicas": existing_groups,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "hpaPodSelector": selector,
            "conditions": conditions,
        }
        if any(status.get(k) != v for k, v in wanted_status.items()):
            result = await self.ctx.client.patch_status(
                LEADERWORKERSETS, name, wanted_status, namespace_of(lws)
            )
            self.ctx.informers.lws.upsert(result)
        for kind in changed_to:
            reason, message = _CONDITIONS[kind]
            self.ctx.recorder.emit(
                lws,
                "Normal",
                reason,
                f"{message}, with {ready} groups ready of total {spec.replicas} groups",
                component=self.name,
            )
        complete = "Available" in active and len(groups) == spec.replicas
        if complete:
            await self._truncate_revisions(lws, digest)

    async def _truncate_revisions(self, lws: KubeObject, digest: str) -> None:
        for revision in self._revisions(lws):
            if labels_of(revision).get(TEMPLATE_HASH_LABEL) == digest:
                continue
            try:
                await self.ctx.client.delete(
                    CONTROLLERREVISIONS, name_of(revision), namespace_of(revision)
                )
            except ApiError as error:
                if not error.not_found:
                    raise
            self.ctx.informers.revisions.forget(revision)
