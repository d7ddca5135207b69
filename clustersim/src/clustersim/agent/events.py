"""Event recording as Kubernetes components do it: core/v1 Events, aggregated by count.

Emitting never blocks the caller: events go through one ordered sender task. A repeat of the same
(object, type, reason, message, source) bumps `count` and `lastTimestamp` on the existing Event,
which is what `kubectl describe` shows as "(x3 over 2m)".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

import aiohttp

from clustersim.agent.kubeclient import EVENTS, ApiError, KubeClient
from clustersim.agent.meta import KubeObject, name_of, namespace_of, rfc3339, uid_of

log = logging.getLogger("clustersim.agent.events")

_MAX_REMEMBERED = 4096


@dataclass(frozen=True)
class _Pending:
    involved: KubeObject
    type: str
    reason: str
    message: str
    component: str
    host: str | None
    field_path: str | None


class EventRecorder:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._seen: dict[tuple[str, ...], tuple[str, str, int]] = {}

    def emit(
        self,
        obj: KubeObject,
        type_: str,
        reason: str,
        message: str,
        *,
        component: str,
        host: str | None = None,
        field_path: str | None = None,
    ) -> None:
        involved = {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", ""),
            "name": name_of(obj),
            "namespace": namespace_of(obj),
            "uid": uid_of(obj),
            "resourceVersion": str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        }
        self._queue.put_nowait(
            _Pending(involved, type_, reason, message, component, host, field_path)
        )

    async def run(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            except (TimeoutError, ApiError, aiohttp.ClientError) as error:
                log.info("could not record event %s %s: %s", pending.reason, pending.message, error)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until queued events are written; used on shutdown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue.empty() and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def _write(self, pending: _Pending) -> None:
        involved = dict(pending.involved)
        if pending.field_path:
            involved["fieldPath"] = pending.field_path
        namespace = involved["namespace"] or "default"
        key = (
            involved["uid"],
            pending.type,
            pending.reason,
            pending.message,
            pending.component,
            pending.field_path or "",
        )
        now = rfc3339()
        seen = self._seen.get(key)
        if seen is not None:
            event_name, event_namespace, count = seen
            try:
                await self.client.merge_patch(
                    EVENTS,
                    event_name,
                    {"count": count + 1, "lastTimestamp": now},
                    event_namespace,
                )
                self._seen[key] = (event_name, event_namespace, count + 1)
                return
            except ApiError as error:
                if not error.not_found:
                    raise
        event_name = f"{involved['name']}.{secrets.token_hex(8)}"
        source: KubeObject = {"component": pending.component}
        if pending.host:
            source["host"] = pending.host
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": involved,
            "reason": pending.reason,
            "message": pending.message,
            "type": pending.type,
            "source": source,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": None,
            "reportingComponent": pending.component,
            "reportingInstance": pending.host or pending.component,
        }
        await self.client.create(EVENTS, event, namespace)
        if len(self._seen) >= _MAX_REMEMBERED:
            self._seen.pop(next(iter(self._seen)))
        self._seen[key] = (event_name, namespace, 1)
