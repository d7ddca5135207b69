"""One query for the reads of every waiting ask of this worker process on one cluster workflow.

Where it sits: under activities/cluster.py. An ask's activity reads the cluster workflow's
`standing` (would the ask change nothing?) and then its `ask_status` until the outcome is
recorded. A workflow answers its queries one activation at a time, so in a warm burst of fifty
rollouts on one worker the askers' reads queued behind one another: the shared pieces' re-check
was recorded 6.75 s into the batch, and the last of 27 waiting asks learned it at 9.15 s. Here
the reads of one process go out together, as one `reads` query (ClusterReads): while a query is
out, the reads that arrive wait for it and go in the next. Each read still gets its own answer,
or the query's error, as if it had asked alone.

A cluster workflow run by a worker of the version before this one has no `reads` query: when the
query fails, each read of that round is asked by its own query (`standing`, `ask_status`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError

from spec.cluster_io import AskStatus, ClusterReadAnswers, ClusterReads, Standing, StandingAsk

T = TypeVar("T")


class ClusterReader:
    """The reads waiting on one cluster workflow; `standing` and `status` are answered by the
    next `reads` query, one query at a time."""

    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self._handle = handle
        self._standing: list[tuple[StandingAsk, asyncio.Future[Standing]]] = []
        self._statuses: list[tuple[str, asyncio.Future[AskStatus]]] = []
        self._rounds: asyncio.Task[None] | None = None

    async def standing(self, ask: StandingAsk) -> Standing:
        """The cluster workflow's `standing` for `ask`."""
        answer: asyncio.Future[Standing] = asyncio.get_running_loop().create_future()
        self._standing.append((ask, answer))
        return await self._wait(answer)

    async def status(self, ask_id: str) -> AskStatus:
        """The cluster workflow's `ask_status` for `ask_id`."""
        answer: asyncio.Future[AskStatus] = asyncio.get_running_loop().create_future()
        self._statuses.append((ask_id, answer))
        return await self._wait(answer)

    async def _wait(self, answer: asyncio.Future[T]) -> T:
        rounds = self._rounds
        # A round left on another loop (a test's, closed) would never end: start one here.
        if rounds is None or rounds.done() or rounds.get_loop() is not answer.get_loop():
            self._rounds = asyncio.create_task(self._send_rounds())
        return await answer

    async def _send_rounds(self) -> None:
        """One query per round, for every read waiting when it starts, until none waits."""
        while self._standing or self._statuses:
            standing, self._standing = self._standing, []
            statuses, self._statuses = self._statuses, []
            reads = ClusterReads(
                standing=[ask for ask, _ in standing], statuses=[ask_id for ask_id, _ in statuses]
            )
            try:
                answers = await self._handle.query(
                    "reads", reads, result_type=ClusterReadAnswers
                )
            except WorkflowQueryFailedError:
                await self._one_by_one(standing, statuses)
                continue
            except Exception as error:
                waiting: list[asyncio.Future[Any]] = [f for _, f in standing]
                for future in waiting + [f for _, f in statuses]:
                    _fail(future, error)
                continue
            for (_, waiting_standing), found in zip(standing, answers.standing, strict=True):
                _answer(waiting_standing, found)
            for (_, waiting_status), status in zip(statuses, answers.statuses, strict=True):
                _answer(waiting_status, status)

    async def _one_by_one(
        self,
        standing: list[tuple[StandingAsk, asyncio.Future[Standing]]],
        statuses: list[tuple[str, asyncio.Future[AskStatus]]],
    ) -> None:
        """Each read by its own query: the workflow's worker may not know `reads` yet."""
        for ask, waiting_standing in standing:
            await _settle(
                waiting_standing, self._handle.query("standing", ask, result_type=Standing)
            )
        for ask_id, waiting_status in statuses:
            await _settle(
                waiting_status, self._handle.query("ask_status", ask_id, result_type=AskStatus)
            )


async def _settle(waiting: asyncio.Future[T], query: Awaitable[T]) -> None:
    try:
        _answer(waiting, await query)
    except Exception as error:
        _fail(waiting, error)


def _open(waiting: asyncio.Future[Any]) -> bool:
    """Still waited for: not cancelled with its activity, nor left on a closed loop."""
    return not waiting.done() and not waiting.get_loop().is_closed()


def _answer(waiting: asyncio.Future[T], value: T) -> None:
    if _open(waiting):
        waiting.set_result(value)


def _fail(waiting: asyncio.Future[Any], error: Exception) -> None:
    if _open(waiting):
        waiting.set_exception(error)


_READERS: weakref.WeakKeyDictionary[Client, dict[str, ClusterReader]] = (
    weakref.WeakKeyDictionary()
)


def reader(client: Client, workflow_id: str) -> ClusterReader:
    """This process's reader of `workflow_id` through `client` (the worker's client)."""
    readers = _READERS.setdefault(client, {})
    found = readers.get(workflow_id)
    if found is None:
        found = readers[workflow_id] = ClusterReader(client.get_workflow_handle(workflow_id))
    return found
