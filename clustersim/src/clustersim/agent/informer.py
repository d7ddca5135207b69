"""Informers: list + watch caches of one resource, resumed from the last resourceVersion.

A watch that ends is resumed from the newest resourceVersion seen; 410 Gone relists (and emits the
differences as events, so handlers never miss a change); connection errors back off up to 5 s.
Resources served by CRDs wait on a gate until their CRD is established. Controllers also push
their own write results in (`upsert`), so they read what they just wrote before the watch echoes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import aiohttp

from clustersim.agent.kubeclient import ApiError, KubeClient, Resource, WatchExpired
from clustersim.agent.meta import KubeObject, key_of, namespace_of

Handler = Callable[[str, KubeObject, KubeObject | None], None]
"""(event type ADDED/MODIFIED/DELETED, object, previous object)"""

log = logging.getLogger("clustersim.agent.informer")


def _rv(obj: KubeObject) -> int | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


class Informer:
    def __init__(self, client: KubeClient, resource: Resource, gate: asyncio.Event | None = None):
        self.client = client
        self.resource = resource
        self.gate = gate
        self.store: dict[str, KubeObject] = {}
        # the same objects by namespace, so controllers reading one namespace (every reconcile
        # does) do not scan the whole cluster's cache
        self._by_namespace: dict[str, dict[str, KubeObject]] = {}
        self.synced = asyncio.Event()
        self._handlers: list[Handler] = []

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> KubeObject | None:
        return self.store.get(f"{namespace}/{name}" if namespace else name)

    def items(self, namespace: str | None = None) -> Iterator[KubeObject]:
        if namespace is None:
            yield from list(self.store.values())
        else:
            yield from list(self._by_namespace.get(namespace, {}).values())

    def _put(self, key: str, obj: KubeObject) -> KubeObject | None:
        previous = self._pop(key)
        self.store[key] = obj
        self._by_namespace.setdefault(namespace_of(obj), {})[key] = obj
        return previous

    def _pop(self, key: str) -> KubeObject | None:
        previous = self.store.pop(key, None)
        if previous is not None:
            namespace = namespace_of(previous)
            members = self._by_namespace.get(namespace)
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self._by_namespace[namespace]
        return previous

    def _emit(self, kind: str, obj: KubeObject, old: KubeObject | None) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj, old)
            except Exception:  # a broken handler must not stop the watch
                log.exception("handler failed for %s %s", self.resource.plural, key_of(obj))

    def upsert(self, obj: KubeObject) -> None:
        """Apply an object we just read, wrote or were sent, unless the cache already has it.

        Every stored change has its own resourceVersion, so an object whose version is not newer
        than the cached one (a watch echoing our own write, or an older read) is no change.
        """
        key = key_of(obj)
        old = self.store.get(key)
        new_rv, old_rv = _rv(obj), _rv(old) if old is not None else None
        if new_rv is not None and old_rv is not None and new_rv <= old_rv:
            return
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        self._put(key, obj)
        self._emit("MODIFIED" if old is not None else "ADDED", obj, old)

    def forget(self, obj: KubeObject) -> None:
        old = self._pop(key_of(obj))
        if old is not None:
            self._emit("DELETED", old, old)

    async def _relist(self) -> str:
        items, version = await self.client.list(self.resource)
        fresh = {key_of(item): item for item in items}
        for key, old in list(self.store.items()):
            if key not in fresh:
                self._pop(key)
                self._emit("DELETED", old, old)
        for key, item in fresh.items():
            previous = self._put(key, item)
            if previous is None:
                self._emit("ADDED", item, None)
            elif _rv(previous) != _rv(item):
                self._emit("MODIFIED", item, previous)
        self.synced.set()
        return version

    def _clear(self) -> None:
        for old in list(self.store.values()):
            self.forget(old)

    async def run(self) -> None:
        """List and watch until cancelled."""
        delay = 0.1
        version: str | None = None
        while True:
            if self.gate is not None and not self.gate.is_set():
                self._clear()
                version = None
                await self.gate.wait()
            try:
                if version is None:
                    version = await self._relist()
                started = asyncio.get_running_loop().time()
                received = 0
                async for kind, obj in self.client.watch(self.resource, version):
                    received += 1
                    delay = 0.1
                    new_version = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_version:
                        version = str(new_version)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        old = self._pop(key_of(obj))
                        self._emit("DELETED", obj, old)
                    else:
                        self.upsert(obj)
                    if self.gate is not None and not self.gate.is_set():
                        break
                if not received and asyncio.get_running_loop().time() - started < 1.0:
                    # A server that ends watches at once must not turn this into a busy loop.
                    await asyncio.sleep(delay)
                    delay = min(5.0, delay * 2)
            except WatchExpired:
                version = None
            except ApiError as error:
                if error.not_found and self.gate is not None:
                    self.gate.clear()
                    continue
                log.warning("watch %s failed: %s", self.resource.plural, error)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
            except (TimeoutError, aiohttp.ClientError, ValueError) as error:
                log.debug("watch %s interrupted: %r", self.resource.plural, error)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
