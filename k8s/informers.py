"""Shared watches: one informer per (cluster, kind, namespace scope) in a worker process.

Where it sits: under the waits (activities/waits.py, serving.py's model-load wait, kube.py's CRD
wait). Fifty concurrent rollouts used to open four watches per role wait each (240 watch threads
at thirty rollouts); now every wait *subscribes* to the process's one informer for the collection
it needs, and filters what it sees by its own label and field selectors. The informer is the
list+watch loop of k8s/watching.py (resumed from its resourceVersion after a cut, relisted
after 410 Gone); it starts with its first subscriber and stops a little after its last one leaves
(`LINGER_SECONDS`; `NAMESPACED_LINGER_SECONDS` for one namespace's), so waits that follow one
another reuse a warm cache. One thread retires the informers whose linger has passed (a timer
thread each held 179 threads at fifty rollouts).

A wait on a namespaced collection first takes one look by LIST (`FirstLook`) and subscribes
only if that does not end it: a rollout with nothing to change finds its objects ready at once,
and fifty of them no longer keep six watches per namespace open (and lingering) for that.

A `Subscription` offers what a private `Informer` does (`synced`, `error`, `objects()`, `get()`,
`stop()`), so a wait changes one line to share. Selectors the cache cannot evaluate (set-based
ones) get a private informer, as before.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client as k8s_client

from k8s.client import ApiUnavailable, KubeClient, KubeError
from k8s.watching import Collection, Informer, object_key

# How long an informer nobody subscribes to keeps watching, for the next wait of the same kind.
LINGER_SECONDS = 30.0
# The same for an informer of one namespace. There is a set of them per target (LWS,
# StatefulSet, Pod, Deployment, Gateway, HTTPRoute), and a target's next wait on the same kind
# comes within moments or not at all. Fifty targets held 275 watch threads, each with its TLS
# connection, those of ended waits lingering 30 s: 5 s took the worker's peak RSS at N=50 from
# 254.9 MB to 231.6 MB, median of three (bench/concurrency.py).
NAMESPACED_LINGER_SECONDS = 5.0
# How long the process's end waits for its informers' threads (a list under way ends by itself).
STOP_SECONDS = 5.0


class Watched(Protocol):
    """What a wait reads from a watch, shared (`Subscription`) or private (`Informer`)."""

    @property
    def synced(self) -> bool: ...

    @property
    def error(self) -> KubeError | None: ...

    @property
    def resource_version(self) -> str | None: ...

    def objects(self) -> list[dict[str, Any]]: ...

    def get(self, key: str) -> dict[str, Any] | None: ...

    def stop(self) -> None: ...


def parse_selector(selector: str | None) -> list[tuple[str, str, str]] | None:
    """`a=b,c!=d` as (key, op, value) triples; None when not equality-based."""
    if not selector:
        return []
    terms = []
    for part in selector.split(","):
        part = part.strip()
        for op in ("!=", "==", "="):
            if op in part:
                key, value = part.split(op, 1)
                terms.append((key.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            return None
    return terms


def _field(obj: dict[str, Any], path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return None if value is None else str(value)


def matches(
    obj: dict[str, Any],
    labels: list[tuple[str, str, str]],
    fields: list[tuple[str, str, str]],
) -> bool:
    metadata_labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(
        (metadata_labels.get(key) == value) == (op == "=") for key, op, value in labels
    ) and all((_field(obj, path) == value) == (op == "=") for path, op, value in fields)


def connection_identity(client: KubeClient) -> str:
    """Who the client is, where: the server and the credentials (a watch sees what RBAC lets
    its credentials see, so two identities never share a cache)."""
    configuration: Any = client.api.configuration
    secret = hashlib.sha256(
        repr(
            (configuration.api_key, configuration.cert_file, configuration.key_file,
             configuration.username)
        ).encode()
    ).hexdigest()[:16]
    return f"{configuration.host}|{secret}"


def own_client(client: KubeClient) -> KubeClient:
    """A client of the shared informer's own: it outlives the activity that started it, whose
    client is closed when the activity ends."""
    return KubeClient(k8s_client.ApiClient(client.api.configuration))


@dataclass(eq=False)
class _Shared:
    informer: Informer
    subscribers: list[Subscription] = field(default_factory=list)

    def changed(self) -> None:
        for subscription in list(self.subscribers):
            subscription.on_change()


class Subscription:
    """One wait's view of a shared informer: the objects its selectors select."""

    def __init__(
        self,
        registry: SharedInformers,
        key: tuple[str, ...],
        shared: _Shared,
        labels: list[tuple[str, str, str]],
        fields: list[tuple[str, str, str]],
        on_change: Callable[[], None],
    ) -> None:
        self._registry = registry
        self._key = key
        self._shared = shared
        self._labels = labels
        self._fields = fields
        self.on_change = on_change
        self.stopped = False

    @property
    def synced(self) -> bool:
        return self._shared.informer.synced

    @property
    def error(self) -> KubeError | None:
        return self._shared.informer.error

    @property
    def resource_version(self) -> str | None:
        return self._shared.informer.resource_version

    def objects(self) -> list[dict[str, Any]]:
        return [
            o for o in self._shared.informer.objects() if matches(o, self._labels, self._fields)
        ]

    def get(self, key: str) -> dict[str, Any] | None:
        found = self._shared.informer.get(key)
        return found if found is not None and matches(found, self._labels, self._fields) else None

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._registry.unsubscribe(self._key, self)


class SharedInformers:
    """The process's informers, by cluster connection, kind and namespace scope."""

    def __init__(
        self, linger_seconds: float = LINGER_SECONDS,
        namespaced_linger_seconds: float = NAMESPACED_LINGER_SECONDS,
    ) -> None:
        self._lock = threading.Lock()
        self._informers: dict[tuple[str, ...], _Shared] = {}
        self._linger = linger_seconds
        self._namespaced_linger = namespaced_linger_seconds
        # The informers nobody subscribes to, by key: when each retires (time.monotonic()).
        # `_retirer` runs while there are any, woken through `_retiring_changed`.
        self._retiring: dict[tuple[str, ...], float] = {}
        self._retiring_changed = threading.Condition(self._lock)
        self._retirer: threading.Thread | None = None

    def subscribe(
        self, client: KubeClient, collection: Collection, on_change: Callable[[], None]
    ) -> Subscription | Informer:
        labels = parse_selector(collection.label_selector)
        fields = parse_selector(collection.field_selector)
        if labels is None or fields is None:
            return Informer(client, collection, on_change).start()
        key = (
            connection_identity(client), collection.api_version, collection.kind,
            collection.namespace or "",
        )
        with self._lock:
            shared = self._informers.get(key)
            if shared is None:
                scope = Collection(collection.api_version, collection.kind, collection.namespace)
                shared = _Shared(Informer(own_client(client), scope, lambda: None))
                # The informer wakes every subscriber (each filters for itself).
                shared.informer._on_change = shared.changed
                self._informers[key] = shared
                shared.informer.start()
            self._retiring.pop(key, None)
            subscription = Subscription(self, key, shared, labels, fields, on_change)
            shared.subscribers.append(subscription)
        # A late subscriber to a synced cache wakes at once, to read what is already there.
        if shared.informer.synced:
            on_change()
        return subscription

    def unsubscribe(self, key: tuple[str, ...], subscription: Subscription) -> None:
        with self._lock:
            shared = subscription._shared
            if subscription in shared.subscribers:
                shared.subscribers.remove(subscription)
            if shared.subscribers:
                return
            if shared.informer.error is not None:
                # Ended on a refusal (403, 404): every subscriber has read the error, and the
                # next one gets a fresh informer that asks again (the RBAC may have been fixed).
                if self._informers.get(key) is shared:
                    del self._informers[key]
                return
            namespaced = bool(key[-1])  # the key ends with the namespace ("": cluster-wide)
            linger = self._namespaced_linger if namespaced else self._linger
            self._retiring[key] = time.monotonic() + linger
            if self._retirer is None:
                self._retirer = threading.Thread(
                    target=self._retire, name="informer-retirer", daemon=True
                )
                self._retirer.start()
            self._retiring_changed.notify()

    def _retire(self) -> None:
        """Stop each informer whose linger has passed with nobody subscribed (a subscriber
        takes it off `_retiring`); end when none is left to retire."""
        while True:
            with self._lock:
                now = time.monotonic()
                due = [key for key, at in self._retiring.items() if at <= now]
                if not due:
                    if not self._retiring:
                        self._retirer = None
                        return
                    self._retiring_changed.wait(min(self._retiring.values()) - now)
                    continue
                retired = []
                for key in due:
                    del self._retiring[key]
                    shared = self._informers.pop(key, None)
                    if shared is not None:
                        retired.append(shared)
            for shared in retired:
                shared.informer.stop()
                # Its own client (own_client): the pooled connection of its list goes too.
                shared.informer.client.close()

    def watching(self) -> int:
        """How many informers (watch streams) run now."""
        with self._lock:
            return len(self._informers)

    def stop_all(self, timeout: float = STOP_SECONDS) -> list[str]:
        """Stop every informer, subscribed or lingering, and wait up to `timeout` for their
        threads; the names of those still running then. For the process's end: a watch thread
        still inside a TLS read (the GIL released) while the interpreter finalizes can crash
        it, and an informer lingers up to `LINGER_SECONDS` after its last wait."""
        with self._lock:
            stopping = list(self._informers.values())
            self._informers.clear()
            self._retiring.clear()
            self._retiring_changed.notify()
        for shared in stopping:
            shared.informer.stop()
        deadline = time.monotonic() + timeout
        for shared in stopping:
            shared.informer.join(max(0.0, deadline - time.monotonic()))
            shared.informer.client.close()
        return [s.informer.thread_name for s in stopping if s.informer.running]


SHARED = SharedInformers()


def stop_shared_informers(timeout: float = STOP_SECONDS) -> list[str]:
    """`SharedInformers.stop_all` of the process's informers (the worker's shutdown)."""
    return SHARED.stop_all(timeout)


class Listed:
    """What one LIST returned, read as a synced `Watched` that never changes."""

    def __init__(self, items: list[dict[str, Any]], version: str) -> None:
        self._objects = {object_key(item): item for item in items}
        self._version = version

    synced = True
    error: KubeError | None = None

    @property
    def resource_version(self) -> str | None:
        return self._version

    def objects(self) -> list[dict[str, Any]]:
        return list(self._objects.values())

    def get(self, key: str) -> dict[str, Any] | None:
        return self._objects.get(key)

    def stop(self) -> None:
        pass


class FirstLook:
    """A wait's view of one collection that starts as a single LIST (`look`, its selectors
    applied by the API server) and becomes a subscription to the shared informer only when the
    wait has to wait (`follow`). A wait whose object is already ready, as in every wait of a
    rollout with nothing to change, then starts no watch: fifty such rollouts kept ~290 watch
    threads (six kinds in fifty namespaces) and their connections open, lingering 30 s each,
    for answers a list gave at once. Before `look` or `follow` it is not synced."""

    def __init__(
        self, client: KubeClient, collection: Collection, on_change: Callable[[], None]
    ) -> None:
        self._client = client
        self._collection = collection
        self._on_change = on_change
        self._current: Watched | None = None
        self._following = False

    def look(self) -> bool:
        """LIST the collection (blocking); False when the API did not answer with a list (the
        informer then meets the trouble and reports it as a watch would)."""
        c = self._collection
        try:
            items, version = self._client.list_objects(
                c.api_version, c.kind, c.namespace, c.label_selector, c.field_selector
            )
        except KubeError:
            return False
        if not self._following:
            self._current = Listed(items, version)
        return True

    def follow(self) -> None:
        """From now on, the shared informer's view (kept current by its watch)."""
        if not self._following:
            self._following = True
            self._current = subscribe(self._client, self._collection, self._on_change)

    @property
    def synced(self) -> bool:
        return self._current is not None and self._current.synced

    @property
    def error(self) -> KubeError | None:
        return None if self._current is None else self._current.error

    @property
    def resource_version(self) -> str | None:
        return None if self._current is None else self._current.resource_version

    def objects(self) -> list[dict[str, Any]]:
        return [] if self._current is None else self._current.objects()

    def get(self, key: str) -> dict[str, Any] | None:
        return None if self._current is None else self._current.get(key)

    def stop(self) -> None:
        if self._current is not None:
            self._current.stop()


def look_at_all(looks: list[FirstLook]) -> bool:
    """Every first look (blocking: call it on a thread); False when any list failed."""
    return all([look.look() for look in looks])


def subscribe(
    client: KubeClient, collection: Collection, on_change: Callable[[], None]
) -> Subscription | Informer:
    """Subscribe to the worker's shared informer for `collection` (see the module doc)."""
    return SHARED.subscribe(client, collection, on_change)


# How long a reader waits for a new shared informer's first list.
SYNC_TIMEOUT_SECONDS = 60.0


def cached_objects(
    client: KubeClient, collection: Collection, timeout: float = SYNC_TIMEOUT_SECONDS
) -> list[dict[str, Any]]:
    """Every object of `collection`, read from the worker's shared informer (started and synced
    first when nobody watches it yet). Fifty concurrent preflights each listing every node and
    every pod of the cluster spent most of the worker's CPU decoding the same lists; the cache
    decodes each change once, and stays warm (`LINGER_SECONDS`) for the next reader. Blocking:
    call it on a thread."""
    woken = threading.Event()
    watched = subscribe(client, collection, woken.set)
    try:
        deadline = time.monotonic() + timeout
        while True:
            # A watch refused after its list (403 on `watch`) leaves a cache that no longer
            # follows the cluster: an error, never stale objects.
            if watched.error is not None:
                raise watched.error
            if watched.synced:
                return watched.objects()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApiUnavailable(
                    0, f"{collection.kind}: the shared watch did not list within {timeout:.0f}s"
                )
            woken.wait(min(remaining, 0.5))
            woken.clear()
    finally:
        watched.stop()


__all__ = [
    "SHARED", "Subscription", "Watched", "cached_objects", "matches", "object_key",
    "parse_selector", "subscribe",
]
