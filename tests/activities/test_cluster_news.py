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
_release = asyncio.Event()


@activity.defn
async def held_operation() -> None:
    await _release.wait()


@workflow.defn(sandboxed=False)
class OneOperation:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            held_operation, start_to_close_timeout=timedelta(seconds=LONG)
        )


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
