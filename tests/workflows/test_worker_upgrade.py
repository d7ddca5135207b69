"""A rollout outlives a worker release: an old and a new worker build on one task queue.

Two builds of the worker run against the session's Temporal, each a `Worker` of its own on the
same task queue:

- the "next" workflow build changes its command sequence behind `workflow.patched`, so a run
  the old build started (and left waiting at an approval gate) replays on the next build and
  finishes, while a run the next build starts takes the new path; the same change without the
  patch fails to replay the old run (NondeterminismError);
- the "next" activity build returns a `LastKnownGood` with a field the old build does not know,
  and the old build's workflows decode it (payload models ignore unknown fields).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from embedded.connect import ConnectionSettings, connect
from embedded.temporal import TemporalDevServer
from rollouts.observing import rollout_result
from rollouts.starting import start_rollout
from spec.activity_io import LastKnownGood, MarkLastKnownGoodInput, SnapshotLookupInput
from spec.workflow_io import ApproveRequest, Outcome, RolloutInput, RolloutResult, RunState
from tests.workflows.fakes import FakeCluster
from tests.workflows.scenarios import WAIT, installed, query, run_rollout, until
from tests.workflows.specs import NEW_IMAGE, decode_replicas, decode_steps, demo_spec, image
from workflows import calls
from workflows.cluster import ClusterWorkflow
from workflows.rollout import RolloutWorkflow

NEXT_BUILD_PATCH = "record-build-in-memo"


# The next build's workflow: the same workflow type, one more command at the start of a run.
# Unsandboxed (like the other test-only workflows): the sandbox would re-import this test module.
@workflow.defn(name="RolloutWorkflow", sandboxed=False)
class NextRolloutWorkflow(RolloutWorkflow):
    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        if workflow.patched(NEXT_BUILD_PATCH):
            workflow.upsert_memo({"build": "next"})
        return await super().run(request)


@workflow.defn(name="RolloutWorkflow", sandboxed=False)
class UnpatchedNextRolloutWorkflow(RolloutWorkflow):
    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        workflow.upsert_memo({"build": "next"})
        return await super().run(request)


class NextLastKnownGood(LastKnownGood):
    """The next build's record: one field more (e.g. who approved the revision)."""

    approved_by: str = "alice"


def next_build_activities(cluster: FakeCluster) -> list[Callable[..., Any]]:
    """The fake activities, with the last-known-good ones returning the next build's record."""

    @activity.defn(name=calls.READ_LAST_KNOWN_GOOD.name)
    async def read_last_known_good(arg: SnapshotLookupInput) -> NextLastKnownGood:
        record = await cluster.read_last_known_good(arg)
        return NextLastKnownGood(**record.model_dump())

    @activity.defn(name=calls.MARK_LAST_KNOWN_GOOD.name)
    async def mark_last_known_good(arg: MarkLastKnownGoodInput) -> NextLastKnownGood:
        record = await cluster.mark_last_known_good(arg)
        return NextLastKnownGood(**record.model_dump())

    return [read_last_known_good, mark_last_known_good]


def unchanged_activities(cluster: FakeCluster) -> list[Callable[..., Any]]:
    replaced = {calls.READ_LAST_KNOWN_GOOD.name, calls.MARK_LAST_KNOWN_GOOD.name}
    # The fakes' methods are named as the activities they register.
    return [a for a in cluster.activities() if a.__name__ not in replaced]


async def memo_build(client: Client, workflow_id: str) -> str | None:
    memo = await client.get_workflow_handle(workflow_id).describe()
    value = (await memo.memo()).get("build")
    return None if value is None else str(value)


async def test_a_run_started_on_the_old_build_finishes_on_the_next_one(
    temporal_client: Client, fake_cluster: FakeCluster
) -> None:
    task_queue = f"worker-upgrade-{uuid.uuid4().hex[:8]}"
    canary = decode_steps({"partition": 1, "approval": True})
    old = Worker(
        temporal_client, task_queue=task_queue, workflows=[RolloutWorkflow, ClusterWorkflow],
        activities=fake_cluster.activities(),
    )
    async with old:
        await installed(temporal_client, fake_cluster, task_queue, "upgrade-across",
                        decode_replicas(2), canary)
        upgrade = demo_spec("upgrade-across", decode_replicas(2), canary, image(NEW_IMAGE))
        handle = await start_rollout(temporal_client, upgrade, task_queue=task_queue)
        await until(query(handle), lambda p: p.state == RunState.WAITING_FOR_APPROVAL)
    # The old build is gone; the next one takes over the waiting run.
    async with Worker(
        temporal_client, task_queue=task_queue,
        workflows=[NextRolloutWorkflow, ClusterWorkflow],
        activities=fake_cluster.activities(),
    ):
        await handle.execute_update(
            RolloutWorkflow.approve, ApproveRequest(gate="decode/step-1", by="alice")
        )
        result = await asyncio.wait_for(rollout_result(handle), WAIT)
        decode_image = fake_cluster.image("decode")
        fresh = await run_rollout(
            temporal_client, demo_spec("upgrade-fresh"), task_queue
        )

    assert result.outcome == Outcome.SUCCEEDED
    assert decode_image == NEW_IMAGE
    # The old run kept the old path; a run the next build started took the new one.
    assert await memo_build(temporal_client, handle.id) is None
    assert fresh.outcome == Outcome.SUCCEEDED
    assert await memo_build(temporal_client, fresh.workflow_id) == "next"
    history = await handle.fetch_history()
    patched = Replayer(workflows=[NextRolloutWorkflow], data_converter=pydantic_data_converter)
    unpatched = Replayer(
        workflows=[UnpatchedNextRolloutWorkflow], data_converter=pydantic_data_converter
    )
    await patched.replay_workflow(history)
    with pytest.raises(NondeterminismError):
        await unpatched.replay_workflow(history)


async def test_old_workflows_decode_a_last_known_good_from_the_next_activity_build(
    temporal_client: Client, temporal_server: TemporalDevServer, fake_cluster: FakeCluster
) -> None:
    task_queue = f"worker-side-by-side-{uuid.uuid4().hex[:8]}"
    # The old build runs the workflows; the next build, beside it on the same task queue and on
    # a connection of its own as a second worker process would, runs every activity. (Were both
    # to serve activities, Temporal's choice of poller would send some record activities to the
    # old build, which lacks them: retried with back-off, once past the test's wait in CI.)
    old = Worker(
        temporal_client, task_queue=task_queue, workflows=[RolloutWorkflow, ClusterWorkflow],
    )
    next_client = await connect(
        ConnectionSettings(address=temporal_server.address, namespace=temporal_server.namespace)
    )
    new = Worker(
        next_client, task_queue=task_queue,
        activities=[*unchanged_activities(fake_cluster), *next_build_activities(fake_cluster)],
    )
    async with old, new:
        first = await run_rollout(temporal_client, demo_spec("side-by-side"), task_queue)
        upgrade = await run_rollout(
            temporal_client, demo_spec("side-by-side", image(NEW_IMAGE)), task_queue
        )

    assert first.outcome == Outcome.SUCCEEDED, first.failure
    assert upgrade.outcome == Outcome.SUCCEEDED, upgrade.failure
    assert upgrade.previous_revision == first.revision
    assert fake_cluster.names("read_last_known_good")
