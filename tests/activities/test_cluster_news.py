"""An ask waiting for its cluster workflow wakes when one of that workflow's activities ends in
this worker process, rather than on its back-off (up to 2 s later): activities/cluster_news.py.
The interceptor is tested on a real dev server with a worker that runs it, as worker.py does."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities import cluster_news
from activities.cluster_news import ActivityEndNews
from workflows.registry import workflow_runner

# Far longer than the test: a pause that lasts it out was not woken.
LONG = 60.0
READS = 10
_release = asyncio.Event()


@activity.defn
async def held_operation() -> None:
    await _release.wait()


@workflow.defn(sandboxed=False)
class OneOperation:
    def __init__(self) -> None:
        self._ended = False

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            held_operation, start_to_close_timeout=timedelta(seconds=LONG)
        )
        self._ended = True

    @workflow.query
    def ended(self) -> bool:
        return self._ended


async def ticks(count: int = 20) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_pause_ends_when_an_activity_of_its_workflow_ends(
    temporal_client: Client,
) -> None:
    queue = f"news-{uuid.uuid4().hex[:8]}"
    workflow_id = f"cluster/{queue}/c"
    _release.clear()
    async with Worker(
        temporal_client, task_queue=queue, workflows=[OneOperation], activities=[held_operation],
        interceptors=[ActivityEndNews()], workflow_runner=workflow_runner(),
    ):
        handle = await temporal_client.start_workflow(
            OneOperation.run, id=workflow_id, task_queue=queue
        )
        waiting = asyncio.create_task(cluster_news.pause(workflow_id, LONG))
        await ticks()
        assert not waiting.done()
        _release.set()
        assert await asyncio.wait_for(waiting, LONG) is True
        await handle.result()


async def test_a_waiter_woken_by_word_reads_the_outcome_of_what_ended(
    temporal_client: Client,
) -> None:
    """The worker reports an activity's completion after the activity returns; a waiter that
    read at once asked a workflow that had not heard of it yet, and slept a whole back-off."""
    queue = f"news-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client, task_queue=queue, workflows=[OneOperation], activities=[held_operation],
        interceptors=[ActivityEndNews()], workflow_runner=workflow_runner(),
    ):
        stale = 0
        for attempt in range(READS):
            _release.clear()
            handle = await temporal_client.start_workflow(
                OneOperation.run, id=f"cluster/{queue}/{attempt}", task_queue=queue
            )
            waiting = asyncio.create_task(cluster_news.pause(handle.id, LONG))
            await ticks()
            _release.set()
            assert await asyncio.wait_for(waiting, LONG) is True
            stale += not await handle.query(OneOperation.ended)
            await handle.result()
    assert stale == 0


async def test_word_of_another_workflow_wakes_no_one() -> None:
    waiting = asyncio.create_task(cluster_news.pause("cluster/q/a", LONG))
    await ticks()
    cluster_news.tell("cluster/q/b")
    await ticks()
    assert not waiting.done()
    cluster_news.tell("cluster/q/a")
    assert await asyncio.wait_for(waiting, LONG) is True
    assert cluster_news._WAITING == {}  # nothing is left registered


async def test_a_pause_nobody_wakes_lasts_its_length() -> None:
    assert await cluster_news.pause("cluster/q/quiet", 0.01) is False
