"""One capacity planner at a time per cluster in a worker process (activities/capacity_hold.py):
concurrent holds take turns instead of racing the compare-and-swap, and a hold cancelled while it
waits, or while it plans, never keeps the turn from the next."""

from __future__ import annotations

import asyncio
import contextlib

from activities.planner_turns import one_planner_at_a_time


async def test_planners_of_one_cluster_take_turns_and_of_two_clusters_do_not_wait() -> None:
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    async def plan(key: str, name: str) -> None:
        async with one_planner_at_a_time(key):
            inside.append(name)
            overlaps.append(tuple(inside))
            await asyncio.sleep(0.01)
            inside.remove(name)

    await asyncio.gather(*(plan("cluster-a", f"a{i}") for i in range(8)))
    assert all(len(seen) == 1 for seen in overlaps), overlaps

    overlaps.clear()
    await asyncio.gather(plan("cluster-b", "b"), plan("cluster-c", "c"))
    assert (("b", "c") in overlaps) or (("c", "b") in overlaps), overlaps


async def test_a_hold_cancelled_while_waiting_or_planning_gives_the_turn_back() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with one_planner_at_a_time("cluster-d"):
            entered.set()
            await release.wait()

    first = asyncio.ensure_future(holder())
    await entered.wait()
    waiting = asyncio.ensure_future(holder())
    await asyncio.sleep(0.01)
    waiting.cancel()  # cancelled while the first one plans
    first.cancel()  # cancelled while it holds the turn
    for task in (first, waiting):
        with contextlib.suppress(asyncio.CancelledError):
            await task

    entered.clear()
    release.set()
    await asyncio.wait_for(holder(), 1.0)
    assert entered.is_set()
