"""The reads of waiting asks go to their cluster workflow together: one query at a time, each
read answered as if it had asked alone (activities/cluster_reads.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.cluster_reads import ClusterReader
from spec.cluster_io import (
    AskStatus,
    ClusterReadAnswers,
    ClusterReads,
    EnsureAnswer,
    EnsureAsk,
    Standing,
    StandingAsk,
)
from spec.rollout import Target


def standing_ask(target_id: str) -> StandingAsk:
    ask = EnsureAsk(
        ask_id=f"ensure/dependencies/{target_id}/run", target_id=target_id,
        target=Target(cluster="sim", namespace=target_id), pieces=[],
        timeout=timedelta(minutes=1),
    )
    return StandingAsk(ask=ask, now=datetime.now(UTC))


class FakeClusterWorkflow:
    """Answers `reads` (or, when it does not know it, `standing` and `ask_status`) from what
    each read names; `hold` keeps a query out until set; `errors` fail the next queries."""

    def __init__(self, *, knows_reads: bool = True) -> None:
        self.knows_reads = knows_reads
        self.sent: list[tuple[str, Any]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.errors: list[Exception] = []

    async def query(self, name: str, arg: Any, result_type: type[Any]) -> Any:
        self.sent.append((name, arg))
        await self.hold.wait()
        if self.errors:
            raise self.errors.pop(0)
        if name == "reads":
            if not self.knows_reads:
                raise WorkflowQueryFailedError("Query handler for 'reads' expected but not found")
            reads = cast(ClusterReads, arg)
            return ClusterReadAnswers(
                standing=[self._standing(ask) for ask in reads.standing],
                statuses=[self._status(ask_id) for ask_id in reads.statuses],
            )
        if name == "standing":
            return self._standing(arg)
        return self._status(arg)

    @staticmethod
    def _standing(ask: StandingAsk) -> Standing:
        # An answer that names its asker, so each read is seen to get its own.
        return Standing(answer=EnsureAnswer(outcomes=[]), in_flight=ask.ask.target_id == "busy")

    @staticmethod
    def _status(ask_id: str) -> AskStatus:
        return AskStatus(ask_id=ask_id, state="running")


def reader_of(fake: FakeClusterWorkflow) -> ClusterReader:
    return ClusterReader(cast(WorkflowHandle[Any, Any], fake))


async def test_reads_that_arrive_while_a_query_is_out_go_together_in_the_next() -> None:
    fake = FakeClusterWorkflow()
    reader = reader_of(fake)
    fake.hold.clear()
    first = asyncio.create_task(reader.status("first"))
    await asyncio.sleep(0.01)
    assert len(fake.sent) == 1  # out, and held
    later = [asyncio.create_task(reader.status(f"ask-{i}")) for i in range(20)]
    standing = [asyncio.create_task(reader.standing(standing_ask(t))) for t in ("idle", "busy")]
    await asyncio.sleep(0.01)
    fake.hold.set()

    assert (await first).ask_id == "first"
    assert [(await t).ask_id for t in later] == [f"ask-{i}" for i in range(20)]
    assert [(await t).in_flight for t in standing] == [False, True]
    # Twenty-three reads, two queries: the first alone, the rest in the one after it.
    assert [name for name, _ in fake.sent] == ["reads", "reads"]
    together = cast(ClusterReads, fake.sent[1][1])
    assert len(together.statuses) == 20 and len(together.standing) == 2


async def test_a_failed_query_fails_the_reads_of_its_round_and_the_next_round_is_answered(
) -> None:
    fake = FakeClusterWorkflow()
    reader = reader_of(fake)
    busy = RPCError("query timed out", RPCStatusCode.DEADLINE_EXCEEDED, b"")
    fake.errors.append(busy)
    with pytest.raises(RPCError) as raised:
        await reader.status("a")
    assert raised.value is busy
    assert (await reader.status("b")).ask_id == "b"


async def test_a_cluster_workflow_without_the_reads_query_is_read_one_query_a_read() -> None:
    # Its worker runs the version before this one: each read is asked by its own query.
    fake = FakeClusterWorkflow(knows_reads=False)
    reader = reader_of(fake)
    fake.hold.clear()
    reads = [
        asyncio.create_task(reader.status("a")),
        asyncio.create_task(reader.standing(standing_ask("busy"))),
        asyncio.create_task(reader.status("b")),
    ]
    await asyncio.sleep(0.01)
    fake.hold.set()
    done = await asyncio.gather(*reads)
    assert [d.ask_id for d in (done[0], done[2])] == ["a", "b"]
    assert isinstance(done[1], Standing) and done[1].in_flight
    assert [name for name, _ in fake.sent] == ["reads", "standing", "ask_status", "ask_status"]


async def test_a_reader_cancelled_with_its_activity_leaves_the_others_answered() -> None:
    fake = FakeClusterWorkflow()
    reader = reader_of(fake)
    fake.hold.clear()
    gone = asyncio.create_task(reader.status("gone"))
    kept = asyncio.create_task(reader.status("kept"))
    await asyncio.sleep(0.01)
    gone.cancel()
    fake.hold.set()
    assert (await kept).ask_id == "kept"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert (await reader.status("after")).ask_id == "after"
