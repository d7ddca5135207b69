"""Word, within one worker process, that an activity of a workflow has just ended: what an ask
waiting for the cluster workflow's outcome wakes on.

Where it sits: an ask's activity (activities/cluster.py) reads the cluster workflow's
`ask_status` on a back-off that grows to 2 s, so an operation that ends just after a read is seen
up to a back-off later: 0.33 s and 0.16 s of a cold install's 2.5 s overhead, read from its
histories (the dependencies ask and the gateway provider ask). The worker's `ActivityEndNews`
interceptor (worker.py) tells this process's waiters on a workflow whenever one of its activities
ends, and they start their back-off again from its shortest pause: the outcome is recorded by the
workflow task that follows the activity's completion, moments later. Word is only a hint: a
waiter on a cluster workflow whose activities run in another worker process reads on its
back-off, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

_WAITING: dict[str, set[asyncio.Event]] = {}
# Word is told when the activity function returns; the worker reports the completion to the
# server just after. A waiter that read at once often asked a workflow that had not heard of it
# (3 reads in 10 in tests/activities/test_cluster_news.py) and then slept a whole back-off:
# 56 ms of one install's dependencies phase. This short wait lets the report arrive first.
REPORTED_SECONDS = 0.005


async def pause(workflow_id: str, seconds: float) -> bool:
    """Sleep up to `seconds`; True, and moments after, when an activity of `workflow_id` ends in
    this process meanwhile (REPORTED_SECONDS)."""
    ended = asyncio.Event()
    waiting = _WAITING.setdefault(workflow_id, set())
    waiting.add(ended)
    try:
        await asyncio.wait_for(ended.wait(), seconds)
    except TimeoutError:
        return False
    finally:
        waiting.discard(ended)
        if not waiting and _WAITING.get(workflow_id) is waiting:
            del _WAITING[workflow_id]
    await asyncio.sleep(REPORTED_SECONDS)
    return True


def tell(workflow_id: str) -> None:
    """An activity of `workflow_id` has ended: wake whoever pauses on it."""
    for ended in _WAITING.get(workflow_id, ()):
        ended.set()


class ActivityEndNews(Interceptor):
    """Tells `pause`'s waiters when an activity of their workflow ends (however it ends)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TellWhenEnded(next)


class _TellWhenEnded(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        finally:
            workflow_id = activity.info().workflow_id
            if workflow_id:
                tell(workflow_id)
