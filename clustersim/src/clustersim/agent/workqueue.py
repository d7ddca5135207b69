"""Work queues and the reconcile loop every controller runs.

Keys are deduplicated while waiting; a key being reconciled that changes again is reconciled once
more afterwards (never twice at the same time). Failures retry with per-key exponential back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import aiohttp

from clustersim.agent.kubeclient import ApiError

log = logging.getLogger("clustersim.agent.controllers")


class WorkQueue:
    def __init__(self) -> None:
        self._order: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._wakeup = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._order.append(key)
            self._wakeup.set()

    def add_after(self, key: str, delay: float) -> None:
        """Add once `delay` seconds from now; an earlier pending timer for the key wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> str:
        while not self._order:
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._order.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._order.append(key)
            self._wakeup.set()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class Controller:
    """Base: subclasses fill the queue from informer handlers and implement `reconcile`."""

    name = "controller"

    def __init__(self) -> None:
        self.queue = WorkQueue()
        self._failures: dict[str, int] = {}

    async def reconcile(self, key: str) -> float | None:
        """Bring one object to its desired state; return seconds until a re-check, if any."""
        raise NotImplementedError

    async def run(self, workers: int = 1) -> None:
        try:
            await asyncio.gather(*(self._worker() for _ in range(workers)))
        finally:
            self.queue.close()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                requeue = await self.reconcile(key)
            except (TimeoutError, ApiError, aiohttp.ClientError) as error:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                level = (
                    logging.DEBUG
                    if isinstance(error, ApiError) and error.conflict
                    else logging.INFO
                )
                log.log(level, "%s: %s failed (%s), retrying", self.name, key, error)
                delay = min(10.0, 0.05 * 2**failures)
                if isinstance(error, ApiError) and error.retry_after is not None:
                    delay = max(delay, error.retry_after)
                self.queue.add_after(key, delay)
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                log.exception("%s: reconcile of %s crashed", self.name, key)
                self.queue.add_after(key, min(30.0, 0.5 * 2**failures))
            else:
                self._failures.pop(key, None)
                if requeue is not None:
                    self.queue.add_after(key, requeue)
            finally:
                self.queue.done(key)
