"""In-memory object storage with a global resourceVersion counter and watch fan-out.

Objects are plain dicts in their storage version and are never mutated once stored: every write
stores a new dict, so readers can serialize them without copying. Each resource keeps a bounded
ring of its recent watch events so a watch can resume from a resourceVersion; a version older
than the ring answers 410 Gone, as an etcd compaction does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from clustersim.apiserver.errors import gone

JsonObject = dict[str, Any]
StorageKey = tuple[str, str]
ObjectKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class WatchEvent:
    """One change of one object; `previous` lets filtered watches translate transitions.

    `encoded` caches the event's JSON line per (type sent, apiVersion shown), so one change is
    serialized once however many watchers receive it in the same form.
    """

    resource_version: int
    type: str
    obj: JsonObject
    previous: JsonObject | None
    encoded: dict[tuple[str, str], bytes] = field(default_factory=dict, compare=False,
                                                  repr=False)


@dataclass(eq=False)
class Watcher:
    """A live watch on one resource, optionally restricted to one namespace."""

    storage_key: StorageKey
    namespace: str | None
    queue: asyncio.Queue[WatchEvent | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=20000))
    overflowed: bool = False

    def offer(self, event: WatchEvent) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # a watcher that cannot keep up is closed, as the real watch cache does
            self.overflowed = True

    def close(self) -> None:
        self.overflowed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


@dataclass
class _Resource:
    objects: dict[ObjectKey, JsonObject] = field(default_factory=dict)
    history: deque[WatchEvent] = field(default_factory=deque)
    # every event at or below this resourceVersion has left the ring
    compacted_through: int = 0
    watchers: set[Watcher] = field(default_factory=set)


def namespace_of(obj: JsonObject) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "")


def name_of(obj: JsonObject) -> str:
    return str(obj.get("metadata", {}).get("name") or "")


def uid_of(obj: JsonObject) -> str:
    return str(obj.get("metadata", {}).get("uid") or "")


class Storage:
    """All objects of the cluster, indexed by resource, namespace and name, and by uid."""

    def __init__(self, history_per_resource: int = 5000) -> None:
        self._history_limit = history_per_resource
        self._resources: dict[StorageKey, _Resource] = {}
        self._by_uid: dict[str, tuple[StorageKey, ObjectKey]] = {}
        self._dependents: dict[str, set[tuple[StorageKey, ObjectKey]]] = {}
        self._by_namespace: dict[str, set[tuple[StorageKey, str]]] = {}
        self.resource_version = 0

    def _resource(self, key: StorageKey) -> _Resource:
        resource = self._resources.get(key)
        if resource is None:
            resource = _Resource()
            self._resources[key] = resource
        return resource

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: StorageKey, namespace: str, name: str) -> JsonObject | None:
        resource = self._resources.get(key)
        if resource is None:
            return None
        return resource.objects.get((namespace, name))

    def list_objects(self, key: StorageKey,
                     namespace: str | None = None) -> list[JsonObject]:
        resource = self._resources.get(key)
        if resource is None:
            return []
        if namespace is None:
            keys = sorted(resource.objects)
        else:
            keys = sorted(k for k in resource.objects if k[0] == namespace)
        return [resource.objects[k] for k in keys]

    def count(self, key: StorageKey) -> int:
        resource = self._resources.get(key)
        return len(resource.objects) if resource else 0

    def storage_keys(self) -> list[StorageKey]:
        return list(self._resources)

    def by_uid(self, uid: str) -> tuple[StorageKey, JsonObject] | None:
        located = self._by_uid.get(uid)
        if located is None:
            return None
        key, object_key = located
        obj = self._resources[key].objects.get(object_key)
        return (key, obj) if obj is not None else None

    def dependents_of(self, uid: str) -> list[tuple[StorageKey, JsonObject]]:
        result = []
        for key, object_key in sorted(self._dependents.get(uid, ())):
            obj = self._resources[key].objects.get(object_key)
            if obj is not None:
                result.append((key, obj))
        return result

    def in_namespace(self, namespace: str) -> list[tuple[StorageKey, JsonObject]]:
        """Every object of a namespace, in a stable order."""
        result = []
        for key, name in sorted(self._by_namespace.get(namespace, ())):
            obj = self._resources[key].objects.get((namespace, name))
            if obj is not None:
                result.append((key, obj))
        return result

    # -- writes -----------------------------------------------------------------------------

    def next_version(self) -> int:
        self.resource_version += 1
        return self.resource_version

    def put(self, key: StorageKey, obj: JsonObject) -> JsonObject:
        """Store a new version of an object (creating or replacing it) and notify watchers.

        Every call bumps the global resourceVersion and stamps it on the stored object, which is
        a new dict with its own `metadata`: the caller's dict and every version stored before
        (and the watch events that carry them) keep their own resourceVersion, even when the
        caller built `obj` as a shallow copy of the previous version.
        """
        resource = self._resource(key)
        version = self.next_version()
        obj = dict(obj)
        obj["metadata"] = metadata = dict(obj["metadata"], resourceVersion=str(version))
        object_key = (str(metadata.get("namespace") or ""), str(metadata["name"]))
        previous = resource.objects.get(object_key)
        resource.objects[object_key] = obj
        self._index(key, object_key, previous, obj)
        self._emit(resource, WatchEvent(version, "MODIFIED" if previous else "ADDED", obj,
                                        previous))
        return obj

    def remove(self, key: StorageKey, namespace: str, name: str) -> JsonObject | None:
        resource = self._resources.get(key)
        if resource is None:
            return None
        previous = resource.objects.pop((namespace, name), None)
        if previous is None:
            return None
        self._index(key, (namespace, name), previous, None)
        version = self.next_version()
        final = dict(previous)
        final["metadata"] = dict(previous["metadata"], resourceVersion=str(version))
        self._emit(resource, WatchEvent(version, "DELETED", final, previous))
        return final

    def restore(self, key: StorageKey, obj: JsonObject) -> None:
        """Load an object from a state file without events."""
        resource = self._resource(key)
        metadata = obj["metadata"]
        object_key = (str(metadata.get("namespace") or ""), str(metadata["name"]))
        resource.objects[object_key] = obj
        self._index(key, object_key, None, obj)

    def _index(self, key: StorageKey, object_key: ObjectKey, previous: JsonObject | None,
               current: JsonObject | None) -> None:
        namespace, name = object_key
        if namespace:
            members = self._by_namespace.setdefault(namespace, set())
            if current is None:
                members.discard((key, name))
                if not members:
                    del self._by_namespace[namespace]
            else:
                members.add((key, name))
        if previous is not None:
            self._by_uid.pop(uid_of(previous), None)
            for reference in previous["metadata"].get("ownerReferences") or ():
                owners = self._dependents.get(str(reference.get("uid")))
                if owners is not None:
                    owners.discard((key, object_key))
                    if not owners:
                        del self._dependents[str(reference.get("uid"))]
        if current is not None:
            self._by_uid[uid_of(current)] = (key, object_key)
            for reference in current["metadata"].get("ownerReferences") or ():
                self._dependents.setdefault(str(reference.get("uid")), set()).add(
                    (key, object_key))

    def drop_resource(self, key: StorageKey) -> None:
        """Forget a resource entirely (its CRD is gone); its watchers are closed."""
        resource = self._resources.pop(key, None)
        if resource is None:
            return
        for object_key, obj in resource.objects.items():
            self._index(key, object_key, obj, None)
        for watcher in resource.watchers:
            watcher.close()

    # -- watch ------------------------------------------------------------------------------

    def _emit(self, resource: _Resource, event: WatchEvent) -> None:
        resource.history.append(event)
        while len(resource.history) > self._history_limit:
            dropped = resource.history.popleft()
            resource.compacted_through = dropped.resource_version
        namespace = namespace_of(event.obj)
        for watcher in list(resource.watchers):
            if watcher.namespace is None or watcher.namespace == namespace:
                watcher.offer(event)

    def compact(self) -> int:
        """Drop every resource's watch history, as an etcd compaction would."""
        for resource in self._resources.values():
            resource.history.clear()
            resource.compacted_through = self.resource_version
        return self.resource_version

    def subscribe(self, key: StorageKey, namespace: str | None,
                  since: int | None) -> tuple[Watcher, list[WatchEvent]]:
        """Start a watch; with `since`, also return the recorded events after that version."""
        resource = self._resource(key)
        backlog: list[WatchEvent] = []
        if since is not None:
            if since < resource.compacted_through:
                raise gone(f"too old resource version: {since} ({resource.compacted_through})")
            backlog = [e for e in resource.history if e.resource_version > since and
                       (namespace is None or namespace_of(e.obj) == namespace)]
        watcher = Watcher(key, namespace)
        resource.watchers.add(watcher)
        return watcher, backlog

    def unsubscribe(self, watcher: Watcher) -> None:
        resource = self._resources.get(watcher.storage_key)
        if resource is not None:
            resource.watchers.discard(watcher)

    def watchers(self) -> Iterator[Watcher]:
        for resource in self._resources.values():
            yield from resource.watchers
