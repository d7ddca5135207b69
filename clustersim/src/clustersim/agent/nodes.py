"""Simulated nodes: registration from the profile, node faults, and the node lifecycle controller.

A node fault `node_not_ready` makes a node stop answering, as a crashed or partitioned machine
does: its conditions turn Unknown ("Kubelet stopped posting node status."), it gets the
`node.kubernetes.io/unreachable` NoSchedule and NoExecute taints, its pods turn not Ready, and after
the eviction delay (profile `pod_eviction`, 300 s like the default toleration) its pods are
deleted so their controllers replace them elsewhere. When the fault ends the node comes back as
after a reboot. A `capacity` fault lowers a node's allocatable for the scheduler.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import aiohttp

from clustersim.agent.context import AgentContext
from clustersim.agent.kubeclient import LEASES, NAMESPACES, NODES, PODS, ApiError, with_retries
from clustersim.agent.kubelet.kubelet import Kubelet, SimNode
from clustersim.agent.meta import (
    KubeObject,
    is_terminating,
    name_of,
    namespace_of,
    rfc3339,
    rfc3339_micro,
)
from clustersim.agent.selectors import toleration_tolerates

log = logging.getLogger("clustersim.agent.nodes")

SIMULATED_LABEL = "clustersim.io/simulated"
LEASE_NAMESPACE = "kube-node-lease"
# Real time, not scaled: the control plane judges node health by wall-clock lease age.
LEASE_RENEW_SECONDS = 10.0
LEASE_DURATION_SECONDS = 40
UNREACHABLE = "node.kubernetes.io/unreachable"
_PRESSURES = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def node_ip(index: int) -> str:
    """InternalIP of the index-th node (1-based): 127.0.10.N, then 127.0.11.x past 254."""
    third, fourth = divmod(index - 1, 254)
    return f"127.0.{10 + third}.{fourth + 1}"


def node_conditions(ready: bool, since: str) -> list[KubeObject]:
    now = rfc3339()
    conditions: list[KubeObject] = []
    for kind, reason, message in _PRESSURES:
        conditions.append(
            {
                "type": kind,
                "status": "False" if ready else "Unknown",
                "reason": reason if ready else "NodeStatusUnknown",
                "message": message if ready else "Kubelet stopped posting node status.",
                "lastHeartbeatTime": now,
                "lastTransitionTime": since,
            }
        )
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready else "Unknown",
            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
            "message": "kubelet is posting ready status"
            if ready
            else "Kubelet stopped posting node status.",
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }
    )
    return conditions


class NodeManager:
    def __init__(self, ctx: AgentContext, kubelet: Kubelet) -> None:
        self.ctx = ctx
        self.kubelet = kubelet
        self._changed = asyncio.Event()
        self._evictions: dict[str, asyncio.Task[None]] = {}
        self._applied: dict[str, tuple[bool, dict[str, str]]] = {}
        ctx.faults.on_change(self._changed.set)

    def _labels(self, node: SimNode) -> dict[str, str]:
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            SIMULATED_LABEL: "true",
        }
        labels.update(node.spec.labels)
        return labels

    def _status(self, node: SimNode, ready: bool, allocatable: dict[str, str]) -> KubeObject:
        return {
            "capacity": dict(node.spec.capacity_text),
            "allocatable": allocatable,
            "conditions": node_conditions(ready, rfc3339()),
            "addresses": [
                {"type": "InternalIP", "address": node.ip},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": node.kubelet_port}},
            "nodeInfo": {
                "machineID": node.name,
                "systemUUID": node.name,
                "bootID": node.name,
                "kernelVersion": "6.8.0-clustersim",
                "osImage": "clustersim simulated node",
                "containerRuntimeVersion": "containerd://2.0.5",
                "kubeletVersion": self.ctx.profile.kubelet_version,
                "kubeProxyVersion": self.ctx.profile.kubelet_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def register(self) -> None:
        """Create (or refresh) every profile node, Ready, with its kubelet endpoint."""
        for node in self.kubelet.nodes.values():
            await with_retries(functools.partial(self._register, node))
            current = self.ctx.informers.nodes.get("", node.name)
            if current is not None:
                self.ctx.recorder.emit(
                    current,
                    "Normal",
                    "Starting",
                    "Starting kubelet.",
                    component="kubelet",
                    host=node.name,
                )
                self.ctx.recorder.emit(
                    current,
                    "Normal",
                    "NodeReady",
                    f"Node {node.name} status is now: NodeReady",
                    component="kubelet",
                    host=node.name,
                )

    async def _register(self, node: SimNode) -> None:
        body: KubeObject = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": self._labels(node),
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": list(node.spec.taints)} if node.spec.taints else {},
        }
        existing = await self.ctx.client.get_or_none(NODES, node.name)
        if existing is None:
            try:
                await self.ctx.client.create(NODES, body)
            except ApiError as error:
                if not error.conflict:
                    raise
        else:
            await self.ctx.client.merge_patch(
                NODES,
                node.name,
                {
                    "metadata": {"labels": body["metadata"]["labels"]},
                    "spec": {"taints": list(node.spec.taints) or None},
                },
            )
        status = self._status(node, True, dict(node.spec.capacity_text))
        updated = await self.ctx.client.patch_status(NODES, node.name, status)
        self.ctx.informers.nodes.upsert(updated)
        self._applied[node.name] = (False, dict(node.spec.capacity_text))

    async def run(self) -> None:
        """Apply node faults whenever the fault set changes (or a fault expires)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            for node in self.kubelet.nodes.values():
                try:
                    await self._apply(node)
                except (TimeoutError, ApiError, aiohttp.ClientError) as error:
                    log.warning("could not apply node faults to %s: %s", node.name, error)
                    self._changed.set()
                    await asyncio.sleep(0.5)

    async def run_heartbeats(self) -> None:
        """Renew each live node's Lease in kube-node-lease, as kubelets do every 10 s, so a real
        control plane's node lifecycle controller keeps the simulated nodes Ready."""
        try:
            await self.ctx.client.create(
                NAMESPACES,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}},
            )
        except ApiError as error:
            if not error.conflict:
                log.info("cannot create namespace %s: %s", LEASE_NAMESPACE, error)
        while True:
            for node in self.kubelet.nodes.values():
                if node.down:
                    continue
                try:
                    await self._renew_lease(node)
                except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                    log.debug("lease renewal for %s failed: %s", node.name, error)
            await asyncio.sleep(LEASE_RENEW_SECONDS)

    async def _renew_lease(self, node: SimNode) -> None:
        renew = {
            "spec": {
                "holderIdentity": node.name,
                "renewTime": rfc3339_micro(),
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            }
        }
        try:
            await self.ctx.client.merge_patch(LEASES, node.name, renew, LEASE_NAMESPACE)
        except ApiError as error:
            if not error.not_found:
                raise
            owner = self.ctx.informers.nodes.get("", node.name)
            metadata: KubeObject = {"name": node.name, "namespace": LEASE_NAMESPACE}
            if owner is not None:
                metadata["ownerReferences"] = [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": node.name,
                        "uid": owner["metadata"]["uid"],
                    }
                ]
            await self.ctx.client.create(
                LEASES,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": metadata,
                    **renew,
                },
                LEASE_NAMESPACE,
            )

    def _desired(self, node: SimNode) -> tuple[bool, dict[str, str]]:
        down = False
        allocatable = dict(node.spec.capacity_text)
        for fault in self.ctx.faults.node_faults(node.name):
            if fault.kind == "node_not_ready":
                down = True
            else:
                allocatable.update(fault.resources)
        return down, allocatable

    async def _apply(self, node: SimNode) -> None:
        desired = self._desired(node)
        if self._applied.get(node.name) == desired:
            return
        down, allocatable = desired
        was_down = self._applied.get(node.name, (False, {}))[0]
        status = self._status(node, not down, allocatable)
        if down == was_down:
            current = self.ctx.informers.nodes.get("", node.name)
            if current is not None:
                status["conditions"] = (current.get("status") or {}).get("conditions") or []
        updated = await self.ctx.client.patch_status(NODES, node.name, status)
        self.ctx.informers.nodes.upsert(updated)
        if down != was_down:
            await self._set_taints(node, down)
            await self.kubelet.set_node_down(node.name, down)
            if down:
                await self._node_lost(node, updated)
            else:
                task = self._evictions.pop(node.name, None)
                if task is not None:
                    task.cancel()
                self.ctx.recorder.emit(
                    updated,
                    "Normal",
                    "NodeReady",
                    f"Node {node.name} status is now: NodeReady",
                    component="kubelet",
                    host=node.name,
                )
        self._applied[node.name] = desired

    async def _set_taints(self, node: SimNode, down: bool) -> None:
        taints = [t for t in node.spec.taints if t.get("key") != UNREACHABLE]
        if down:
            stamp = rfc3339()
            taints += [
                {"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": stamp},
                {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": stamp},
            ]
        updated = await self.ctx.client.merge_patch(
            NODES, node.name, {"spec": {"taints": taints or None}}
        )
        self.ctx.informers.nodes.upsert(updated)

    def _pods_on(self, node_name: str) -> list[KubeObject]:
        return [
            pod
            for pod in self.ctx.informers.pods.items()
            if (pod.get("spec") or {}).get("nodeName") == node_name and not is_terminating(pod)
        ]

    async def _node_lost(self, node: SimNode, node_obj: KubeObject) -> None:
        self.ctx.recorder.emit(
            node_obj,
            "Normal",
            "NodeNotReady",
            f"Node {node.name} status is now: NodeNotReady",
            component="node-controller",
        )
        for pod in self._pods_on(node.name):
            conditions = [dict(c) for c in (pod.get("status") or {}).get("conditions") or []]
            for condition in conditions:
                if condition.get("type") in ("Ready", "ContainersReady"):
                    condition.update({"status": "False", "lastTransitionTime": rfc3339()})
            try:
                await self.ctx.client.patch_status(
                    PODS, name_of(pod), {"conditions": conditions}, namespace_of(pod)
                )
            except ApiError as error:
                if not error.not_found:
                    raise
            self.ctx.recorder.emit(
                pod, "Warning", "NodeNotReady", "Node is not ready", component="node-controller"
            )
        self._evictions[node.name] = asyncio.create_task(self._evict_later(node.name))

    def _toleration_seconds(self, pod: KubeObject) -> float | None:
        """How long the pod tolerates the unreachable NoExecute taint (None: forever).

        Pods without such a toleration get the DefaultTolerationSeconds admission default
        (the profile's `pod_eviction`), as on a real cluster.
        """
        taint = {"key": UNREACHABLE, "effect": "NoExecute"}
        for toleration in (pod.get("spec") or {}).get("tolerations") or []:
            if toleration_tolerates(toleration, taint):
                seconds: Any = toleration.get("tolerationSeconds")
                return None if seconds is None else float(seconds)
        return self.ctx.profile.durations.pod_eviction

    async def _evict_later(self, node_name: str) -> None:
        """Taint-based eviction: pods without their own toleration go after `pod_eviction`."""
        waits = []
        for pod in self._pods_on(node_name):
            seconds = self._toleration_seconds(pod)
            if seconds is not None:
                waits.append((seconds, pod))
        waits.sort(key=lambda item: item[0])
        loop = asyncio.get_running_loop()
        started = loop.time()
        for seconds, pod in waits:
            await asyncio.sleep(max(0.0, started + self.ctx.scale.delay(seconds) - loop.time()))
            self.ctx.recorder.emit(
                pod,
                "Normal",
                "TaintManagerEviction",
                f"Marking for deletion Pod {namespace_of(pod)}/{name_of(pod)}",
                component="taint-eviction-controller",
            )
            delete = functools.partial(
                self.ctx.client.delete, PODS, name_of(pod), namespace_of(pod)
            )
            try:
                await with_retries(delete)
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                log.warning("eviction of %s failed: %s", name_of(pod), error)

    async def shutdown(self) -> None:
        for task in self._evictions.values():
            task.cancel()
