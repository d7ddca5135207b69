"""Controllers that a real control plane runs next to the API server, run here in-process.

- garbage collector: ownerReferences, with Background, Foreground (blockOwnerDeletion) and
  Orphan propagation;
- namespace lifecycle: a deleted namespace is Terminating until its content is gone;
- CRD lifecycle: served kinds appear when a CRD is written (Established, NamesAccepted) and its
  objects are removed before the CRD itself;
- service accounts: every namespace gets its `default` ServiceAccount;
- pod garbage collection: pods bound to a node that no longer exists are removed.

Changes arrive synchronously from `ObjectService` and are handled on one asyncio task, so every
controller sees a consistent store and no request waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from clustersim.apiserver import crds
from clustersim.apiserver.errors import ApiError
from clustersim.apiserver.kinds import ResourceType
from clustersim.apiserver.objects import (
    CRD_CLEANUP,
    FOREGROUND,
    ORPHAN,
    DeleteOptions,
    ObjectService,
    WriteOptions,
)
from clustersim.apiserver.storage import name_of, namespace_of, uid_of

JsonObject = dict[str, Any]
Task = Callable[[], None]

LOG = logging.getLogger(__name__)
MANAGER = "clustersim-controller-manager"
NAMESPACE_KEY = ("", "namespaces")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NODE_KEY = ("", "nodes")
POD_KEY = ("", "pods")


def _terminating(obj: JsonObject) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


class ControlLoops:
    """The in-process controllers, fed by the object service's change notifications."""

    def __init__(self, service: ObjectService) -> None:
        self.service = service
        self.storage = service.storage
        self.types = service.types
        self._queue: asyncio.Queue[Task] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        service.listeners.append(self._changed)

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _run(self) -> None:
        while True:
            task = await self._queue.get()
            try:
                task()
            except ApiError as error:
                LOG.debug("controller step failed: %s", error)
            except Exception:  # a broken step must not stop every controller
                LOG.exception("controller step crashed")

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until queued controller work is done (bounded by `timeout`)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._queue.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def _enqueue(self, task: Task) -> None:
        self._queue.put_nowait(task)

    def run_pending(self) -> None:
        """Run queued work synchronously (used at start-up before the loop task exists)."""
        for _ in range(100000):
            if self._queue.empty():
                return
            self._queue.get_nowait()()

    # -- change notifications ---------------------------------------------------------------

    def _changed(self, resource: ResourceType, old: JsonObject | None,
                 new: JsonObject | None) -> None:
        key = resource.storage_key
        if new is not None:
            if key == CRD_KEY:
                self._register_crd(new)
                crd_name = name_of(new)
                self._enqueue(lambda: self._establish(crd_name))
            if old is None:
                self._created(key, new)
            if _terminating(new) and (old is None or not _terminating(old)
                                      or old["metadata"].get("finalizers")
                                      != new["metadata"].get("finalizers")):
                self._enqueue(lambda: self._finalize(key, new))
            return
        if old is not None:
            self._removed(resource, old)

    def _created(self, key: tuple[str, str], obj: JsonObject) -> None:
        if key == NAMESPACE_KEY:
            namespace = name_of(obj)
            self._enqueue(lambda: self.ensure_default_service_account(namespace))
        if obj["metadata"].get("ownerReferences"):
            uid = uid_of(obj)
            self._enqueue(lambda: self._collect_if_orphaned(uid))

    def _removed(self, resource: ResourceType, obj: JsonObject) -> None:
        uid = uid_of(obj)
        self._enqueue(lambda: self._collect_dependents(uid))
        for reference in obj["metadata"].get("ownerReferences") or []:
            owner_uid = str(reference.get("uid"))
            self._enqueue(functools.partial(self._recheck_owner, owner_uid))
        namespace = namespace_of(obj)
        if namespace:
            self._enqueue(lambda: self._clean_namespace(namespace))
        if resource.storage_key == NODE_KEY:
            node = name_of(obj)
            self._enqueue(lambda: self._collect_pods_of_node(node))
        if resource.storage_key == CRD_KEY:
            self._unregister_crd(obj)
        elif resource.crd_name:
            crd_name = resource.crd_name
            self._enqueue(lambda: self._clean_crd(crd_name))

    # -- garbage collector ------------------------------------------------------------------

    def _type_of(self, key: tuple[str, str]) -> ResourceType | None:
        return self.types.by_storage_key(key)

    def _delete(self, key: tuple[str, str], obj: JsonObject, policy: str) -> None:
        resource = self._type_of(key)
        if resource is None:
            return
        try:
            self.service.delete(resource, namespace_of(obj), name_of(obj),
                                DeleteOptions(propagation_policy=policy))
        except ApiError as error:
            if error.code != 404:
                raise

    def _collect_if_orphaned(self, uid: str) -> None:
        located = self.storage.by_uid(uid)
        if located is None:
            return
        key, obj = located
        references = obj["metadata"].get("ownerReferences") or []
        if references and all(self.storage.by_uid(str(r.get("uid"))) is None
                              for r in references):
            self._delete(key, obj, "Background")

    def _collect_dependents(self, owner_uid: str) -> None:
        for key, dependent in self.storage.dependents_of(owner_uid):
            references = dependent["metadata"].get("ownerReferences") or []
            alive = [r for r in references if self.storage.by_uid(str(r.get("uid"))) is not None]
            if not alive:
                if not _terminating(dependent):
                    self._delete(key, dependent, "Background")
            elif len(alive) != len(references):
                self._set_owner_references(key, dependent, alive)

    def _set_owner_references(self, key: tuple[str, str], obj: JsonObject,
                              references: list[JsonObject]) -> None:
        resource = self._type_of(key)
        if resource is None:
            return
        new = dict(obj)
        new["metadata"] = dict(obj["metadata"])
        if references:
            new["metadata"]["ownerReferences"] = references
        else:
            new["metadata"].pop("ownerReferences", None)
        self.service.write_internal(resource, obj, new, "garbage-collector")

    def _recheck_owner(self, owner_uid: str) -> None:
        located = self.storage.by_uid(owner_uid)
        if located is not None and _terminating(located[1]):
            key, owner = located
            self._finalize(key, owner)

    def _remove_finalizer(self, key: tuple[str, str], obj: JsonObject, finalizer: str) -> None:
        resource = self._type_of(key)
        if resource is None:
            return
        new = dict(obj)
        new["metadata"] = dict(obj["metadata"])
        remaining = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        if remaining:
            new["metadata"]["finalizers"] = remaining
        else:
            new["metadata"].pop("finalizers", None)
        self.service.write_internal(resource, obj, new, MANAGER)

    def _finalize(self, key: tuple[str, str], stale: JsonObject) -> None:
        """Work on a terminating object until its finalizers that we own are done."""
        obj = self.storage.get(key, namespace_of(stale), name_of(stale))
        if obj is None or not _terminating(obj):
            return
        finalizers = obj["metadata"].get("finalizers") or []
        uid = uid_of(obj)
        if ORPHAN in finalizers:
            for dependent_key, dependent in self.storage.dependents_of(uid):
                kept = [r for r in dependent["metadata"].get("ownerReferences") or []
                        if r.get("uid") != uid]
                self._set_owner_references(dependent_key, dependent, kept)
            self._remove_finalizer(key, obj, ORPHAN)
            return
        if FOREGROUND in finalizers:
            for dependent_key, dependent in self.storage.dependents_of(uid):
                if not _terminating(dependent):
                    self._delete(dependent_key, dependent, "Foreground")
            still_blocking = [d for _, d in self.storage.dependents_of(uid)
                              if any(r.get("uid") == uid and r.get("blockOwnerDeletion")
                                     for r in d["metadata"].get("ownerReferences") or [])]
            if not still_blocking:
                current = self.storage.get(key, namespace_of(obj), name_of(obj))
                if current is not None:
                    self._remove_finalizer(key, current, FOREGROUND)
            return
        if key == NAMESPACE_KEY:
            self._clean_namespace(name_of(obj))
        elif key == CRD_KEY:
            self._clean_crd(name_of(obj))

    def _collect_pods_of_node(self, node: str) -> None:
        if self.storage.get(NODE_KEY, "", node) is not None:
            return
        pods = self._type_of(POD_KEY)
        if pods is None:
            return
        for pod in self.storage.list_objects(POD_KEY):
            if (pod.get("spec") or {}).get("nodeName") == node:
                self.service.remove_now(pods, pod)

    # -- namespaces -------------------------------------------------------------------------

    def ensure_default_service_account(self, namespace: str) -> None:
        found = self.storage.get(NAMESPACE_KEY, "", namespace)
        if found is None or _terminating(found):
            return
        if self.storage.get(("", "serviceaccounts"), namespace, "default") is not None:
            return
        accounts = self._type_of(("", "serviceaccounts"))
        if accounts is None:
            return
        self.service.create(accounts, namespace,
                            {"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "default", "namespace": namespace}},
                            WriteOptions(field_manager="kube-controller-manager"))

    def _clean_namespace(self, namespace: str) -> None:
        found = self.storage.get(NAMESPACE_KEY, "", namespace)
        if found is None or not _terminating(found):
            return
        for key, obj in self.storage.in_namespace(namespace):
            if not _terminating(obj):
                self._delete(key, obj, "Background")
        if self.storage.in_namespace(namespace):
            return
        current = self.storage.get(NAMESPACE_KEY, "", namespace)
        namespaces = self._type_of(NAMESPACE_KEY)
        if current is None or namespaces is None:
            return
        new = dict(current)
        new["spec"] = dict(current.get("spec") or {})
        new["spec"]["finalizers"] = [f for f in new["spec"].get("finalizers") or []
                                     if f != "kubernetes"]
        if not new["spec"]["finalizers"]:
            new["spec"].pop("finalizers")
        self.service.write_internal(namespaces, current, new, "namespace-controller", "finalize")

    # -- custom resource definitions --------------------------------------------------------

    def _register_crd(self, crd: JsonObject) -> None:
        if _terminating(crd):
            return
        self.types.set_custom(name_of(crd), crds.served_types(crd))

    def _unregister_crd(self, crd: JsonObject) -> None:
        name = name_of(crd)
        served = self.types.custom(name)
        self.types.remove_custom(name)
        for key in {t.storage_key for t in served}:
            self.storage.drop_resource(key)

    def _establish(self, name: str) -> None:
        crd = self.storage.get(CRD_KEY, "", name)
        definitions = self._type_of(CRD_KEY)
        if crd is None or definitions is None or _terminating(crd):
            return
        status = crds.crd_status(crd, self.service.now(), crd)
        if crd.get("status") == status:
            return
        new = dict(crd)
        new["status"] = status
        self.service.write_internal(definitions, crd, new, "apiextensions-controller",
                                    "status")

    def _clean_crd(self, name: str) -> None:
        crd = self.storage.get(CRD_KEY, "", name)
        if crd is None or not _terminating(crd):
            return
        served = self.types.custom(name)
        if served:
            key = served[0].storage_key
            for obj in self.storage.list_objects(key):
                if not _terminating(obj):
                    self._delete(key, obj, "Background")
            if self.storage.count(key):
                return
        current = self.storage.get(CRD_KEY, "", name)
        if current is not None:
            self._remove_finalizer(CRD_KEY, current, CRD_CLEANUP)
