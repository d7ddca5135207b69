"""Watch-driven waits: informers that list then watch on a thread and wake an asyncio waiter.

Where it sits: under every wait activity (kube.py's LWS/Deployment/Gateway/HTTPRoute waits,
serving.py's model-load wait). An `Informer` keeps a cache of one collection (list, then watch
from the list's resourceVersion; reconnect from the last resourceVersion when the API drops the
stream; relist when it answers 410 Gone) and sets an asyncio.Event on every change, so the waiter
re-evaluates the moment the API shows a new state instead of polling. A `LogFollower` streams a
container's log lines the same way. Nothing here knows of Temporal: activities/heartbeat.py
tells Temporal the activity is alive while these run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3

from k8s.client import (
    ApiUnavailable,
    KubeClient,
    KubeError,
    close_stream,
    discard,
    stream_lines,
    watch_events,
)

WATCH_TIMEOUT_SECONDS = 240
_RECONNECT_BASE = 0.05
_RECONNECT_MAX = 2.0


@dataclass(frozen=True)
class Collection:
    api_version: str
    kind: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None


def object_key(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    name = str(metadata.get("name", ""))
    return f"{namespace}/{name}" if namespace else name


class Informer:
    """A live cache of one collection, kept by a list+watch loop on its own thread."""

    def __init__(
        self,
        client: KubeClient,
        collection: Collection,
        on_change: Callable[[], None],
        timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    ) -> None:
        self.client = client
        self.collection = collection
        self._on_change = on_change
        self._timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{collection.kind}", daemon=True
        )
        self.synced = False
        # The API server has accepted a watch of the collection (at least once): what the
        # worker needs RBAC `watch` for has been asked, whatever the list showed.
        self.watch_accepted = False
        self.error: KubeError | None = None
        self.resource_version: str | None = None
        self.relists = 0
        self.reconnects = 0

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                close_stream(response)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def thread_name(self) -> str:
        return self._thread.name

    def objects(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(key)

    def _run(self) -> None:
        failures = 0
        c = self.collection
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    items, version = self.client.list_objects(
                        c.api_version, c.kind, c.namespace, c.label_selector, c.field_selector
                    )
                    self.relists += 1
                    with self._lock:
                        self._objects = {object_key(i): i for i in items}
                    self.synced = True
                    self.resource_version = version
                    self._on_change()
                response = self.client.watch(
                    c.api_version,
                    c.kind,
                    c.namespace,
                    self.resource_version,
                    c.label_selector,
                    c.field_selector,
                    self._timeout_seconds,
                )
                self._response = response
                if self._stop.is_set():
                    break
                if not self.watch_accepted:
                    self.watch_accepted = True
                    self._on_change()
                self._consume(response)
                failures = 0
                self.reconnects += 1
            except KubeError as error:
                if error.status == 410:
                    self.resource_version = None
                    continue
                if not isinstance(error, ApiUnavailable) and error.status in (401, 403, 404):
                    self.error = error
                    self._on_change()
                    return
                failures += 1
                self._pause(failures)
            except Exception:
                # The stream was cut (or closed under us by `stop`): resume from the last
                # resourceVersion seen. urllib3 raises more than its own errors when a stream
                # is torn down mid-read, so any error here means "the stream is gone".
                if self._stop.is_set():
                    break
                failures += 1
                self.reconnects += 1
                self._pause(failures)
            finally:
                current = self._response
                self._response = None
                if current is not None:
                    discard(current)

    def _consume(self, response: urllib3.BaseHTTPResponse) -> None:
        """Apply a watch stream's events, keeping `resource_version` at the last one seen
        (None after 410 Gone: our resourceVersion is too old for the watch cache; list again)."""
        for event in watch_events(response):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    self.resource_version = None
                return
            new_version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind != "BOOKMARK":
                obj.setdefault("apiVersion", self.collection.api_version)
                obj.setdefault("kind", self.collection.kind)
                with self._lock:
                    if kind == "DELETED":
                        self._objects.pop(object_key(obj), None)
                    else:
                        self._objects[object_key(obj)] = obj
            if new_version:
                self.resource_version = str(new_version)
            if kind != "BOOKMARK":
                self._on_change()

    def _pause(self, failures: int) -> None:
        self._stop.wait(min(_RECONNECT_MAX, _RECONNECT_BASE * 2 ** min(failures, 6)))


class LogFollower:
    """Follow one container's log on a thread, handing each line to `on_line` (any thread)."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        pod: str,
        container: str,
        on_line: Callable[[str], None],
        on_end: Callable[[], None],
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self._on_line = on_line
        self._on_end = on_end
        self._stop = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._thread = threading.Thread(target=self._run, name=f"log-{pod}", daemon=True)
        self.done = False
        # What the log endpoint answered when the follow could not start (e.g. 500: kubelet
        # unreachable), for the waiter's evidence; None when it streamed.
        self.error: str | None = None

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                close_stream(response)

    def _run(self) -> None:
        try:
            response = self.client.follow_log(self.namespace, self.pod, self.container)
            self._response = response
            if self._stop.is_set():
                return
            for line in stream_lines(response):
                if self._stop.is_set():
                    return
                self._on_line(line)
        except KubeError as error:
            self.error = error.message
        except Exception:
            # The container is not running (yet, or any more), or `stop` closed the stream:
            # the waiter restarts the follow when the pod's status says the container runs.
            pass
        finally:
            self.done = True
            current = self._response
            if current is not None:
                discard(current)
            if not self._stop.is_set():
                self._on_end()


class Wakeup:
    """A thread-safe "something changed" flag for one asyncio waiter."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        """Wait for a change (True) or until `timeout` (False); then re-arm."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True
