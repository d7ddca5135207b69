"""The kubelets of all simulated nodes: pod workers, status reporting and node failures.

One Kubelet object serves every simulated node (each node has its own IP, image store and pull
slot). It reacts to the pod watch: a pod bound to one of our nodes gets a PodWorker; a deletion
timestamp starts graceful termination; a vanished pod is stopped at once. Status changes are
coalesced and written through the pods/status subresource.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from clustersim.agent.context import AgentContext
from clustersim.agent.kubeclient import PODS, ApiError, with_retries
from clustersim.agent.kubelet.images import NodeImages
from clustersim.agent.kubelet.podworker import PodWorker
from clustersim.agent.meta import KubeObject, is_terminating, uid_of
from clustersim.agent.profile import NodeSpec

log = logging.getLogger("clustersim.agent.kubelet")


@dataclass
class SimNode:
    spec: NodeSpec
    ip: str
    kubelet_port: int = 0
    images: NodeImages = field(default_factory=NodeImages)
    down: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


class Kubelet:
    def __init__(self, ctx: AgentContext, nodes: list[SimNode]) -> None:
        self.ctx = ctx
        self.nodes = {node.name: node for node in nodes}
        self.workers: dict[str, PodWorker] = {}
        self._dirty: dict[str, PodWorker] = {}
        self._wakeup = asyncio.Event()
        self._last_written: dict[str, KubeObject] = {}
        self._removing: set[asyncio.Task[None]] = set()

    # ---- lookups for the kubelet HTTP API and the node manager ---------------------------

    def worker_for(self, namespace: str, name: str) -> PodWorker | None:
        for worker in self.workers.values():
            if worker.namespace == namespace and worker.name == name:
                return worker
        return None

    def workers_on(self, node_name: str) -> list[PodWorker]:
        return [w for w in self.workers.values() if w.node.name == node_name]

    # ---- pod watch ----------------------------------------------------------------------

    def on_pod(self, kind: str, pod: KubeObject, _: KubeObject | None) -> None:
        node_name = (pod.get("spec") or {}).get("nodeName")
        uid = uid_of(pod)
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None and not worker.gone:
                self._background(self._vanished(worker))
            return
        if node_name not in self.nodes:
            return
        phase = (pod.get("status") or {}).get("phase")
        if worker is None:
            if phase in ("Succeeded", "Failed") and not is_terminating(pod):
                return
            worker = PodWorker(self, self.nodes[str(node_name)], pod)
            self.workers[uid] = worker
            self._adopt_ip(worker, pod)
            worker.start()
        else:
            worker.update(pod)
        if is_terminating(pod) and not worker.terminating:
            self._background(worker.terminate())

    def _adopt_ip(self, worker: PodWorker, pod: KubeObject) -> None:
        """After an agent restart, keep the IP an existing pod already reports."""
        address = (pod.get("status") or {}).get("podIP")
        if address and self.ctx.ipam.reserve(worker.uid, str(address)):
            worker.ip = str(address)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._removing.add(task)
        task.add_done_callback(self._removing.discard)

    async def _vanished(self, worker: PodWorker) -> None:
        await worker.stop_everything()
        self._forget(worker)

    def _forget(self, worker: PodWorker) -> None:
        worker.gone = True
        self.workers.pop(worker.uid, None)
        self._dirty.pop(worker.uid, None)
        self._last_written.pop(worker.uid, None)
        self.ctx.ipam.release(worker.uid)

    async def remove_pod(self, worker: PodWorker) -> None:
        """The last step of graceful deletion: delete with grace 0 (uid precondition)."""
        delete = functools.partial(
            self.ctx.client.delete,
            PODS,
            worker.name,
            worker.namespace,
            grace_period_seconds=0,
            uid=worker.uid,
        )
        try:
            await with_retries(delete)
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("could not delete pod %s/%s: %s", worker.namespace, worker.name, error)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not delete pod %s/%s: %s", worker.namespace, worker.name, error)
        self._forget(worker)

    # ---- status manager ------------------------------------------------------------------

    def mark_dirty(self, worker: PodWorker) -> None:
        self._dirty[worker.uid] = worker
        self._wakeup.set()

    async def flush_now(self, worker: PodWorker) -> None:
        """The pod's last status before it is deleted, retried like any write. A status the API
        server keeps refusing is given up on, never allowed to stop the deletion: a pod left
        Terminating forever blocks its StatefulSet (a rollback under API faults hung so)."""
        self._dirty.pop(worker.uid, None)
        try:
            await with_retries(functools.partial(self._write, worker))
        except (TimeoutError, ApiError, aiohttp.ClientError) as error:
            log.warning("last status of %s/%s not written: %s", worker.namespace, worker.name,
                        error)

    async def _write(self, worker: PodWorker) -> None:
        if worker.gone or worker.node_down:
            return
        status = worker.status()
        if self._last_written.get(worker.uid) == status:
            return
        try:
            updated = await self.ctx.client.patch_status(
                PODS, worker.name, status, worker.namespace
            )
        except ApiError as error:
            if error.not_found:
                return
            raise
        self._last_written[worker.uid] = status
        if uid_of(updated) == worker.uid:
            self.ctx.informers.pods.upsert(updated)

    async def run_status_manager(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._dirty = self._dirty, {}
            pause = 0.05
            for worker in batch.values():
                try:
                    await self._write(worker)
                except (TimeoutError, ApiError, aiohttp.ClientError) as error:
                    log.info("status write for %s failed (%s); retrying", worker.name, error)
                    self._dirty.setdefault(worker.uid, worker)
                    if isinstance(error, ApiError) and error.retry_after is not None:
                        pause = max(pause, min(error.retry_after, 30.0))
            if self._dirty:
                await asyncio.sleep(pause)
                self._wakeup.set()

    # ---- node failures -------------------------------------------------------------------

    async def set_node_down(self, node_name: str, down: bool) -> None:
        node = self.nodes[node_name]
        if node.down == down:
            return
        node.down = down
        for worker in self.workers_on(node_name):
            if down:
                await worker.lose_node()
            else:
                worker.recover_node()

    async def shutdown(self) -> None:
        for worker in list(self.workers.values()):
            await worker.stop_everything()
        for task in list(self._removing):
            task.cancel()
