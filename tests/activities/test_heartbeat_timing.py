"""When an activity beats (activities/heartbeat.py): HEARTBEAT_SECONDS after its last beat or its
attempt's start, across the calls it makes one after another. Fifty cold rollouts on one worker
timed `hold_capacity` out (`activity Heartbeat timeout`): reading the holds, planning and waiting
for the planning turn each took a little less than the beat interval, and each call counted it
from its own start, so none beat."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities import heartbeat
from activities.heartbeat import heartbeating
from spec.activity_io import HEARTBEAT_STEP

INTERVAL = 1.0


def environment(started_ago: float) -> tuple[ActivityEnvironment, list[Any]]:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, activity_id=f"beats-{started_ago}",
        started_time=datetime.now(UTC) - timedelta(seconds=started_ago),
    )
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.extend(details)
    return env, beats


async def test_calls_shorter_than_the_interval_one_after_another_still_beat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", INTERVAL)
    env, beats = environment(started_ago=0)

    async def three_short_steps() -> None:
        for step in ("reading the holds", "planning", "waiting for the turn"):
            await heartbeating(asyncio.sleep(INTERVAL * 0.75), step)

    await env.run(three_short_steps)

    # 2.25 intervals of work: due at 1 and 2 intervals, in the second and third calls.
    assert [beat["step"] for beat in beats] == ["planning", "waiting for the turn"]


async def test_an_attempt_started_long_ago_beats_at_once_and_then_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", INTERVAL)
    env, beats = environment(started_ago=INTERVAL * 2)  # it waited for the worker this long

    await env.run(heartbeating, asyncio.sleep(INTERVAL * 0.5), "capacity plan")
    assert [beat["step"] for beat in beats] == ["capacity plan"]
    await env.run(heartbeating, asyncio.sleep(INTERVAL * 0.25), "capacity plan")
    assert len(beats) == 1  # the next one is due an interval after the first
    await env.run(heartbeating, asyncio.sleep(INTERVAL * 0.5), "holding the plan")
    assert [beat["step"] for beat in beats] == ["capacity plan", "holding the plan"]


async def test_a_worker_clock_behind_the_servers_does_not_put_the_first_beat_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attempt's start is the server's time; seen from a worker whose clock is behind, it
    lies ahead. The first beat is still due within the interval."""
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", INTERVAL)
    env, beats = environment(started_ago=-10 * INTERVAL)

    await env.run(heartbeating, asyncio.sleep(INTERVAL * 1.25), "capacity plan")

    assert [beat["step"] for beat in beats] == ["capacity plan"]


def test_a_step_with_details_beats_them_and_counts_as_the_attempts_last_beat() -> None:
    """The waits that beat their own details (CRDs Established, objects being deleted) beat
    through `heartbeat_step`: under the step key the workflow reads back when the activity
    times out, and noted, so the next `heartbeating` call does not beat again at once."""
    env, beats = environment(started_ago=60)
    due_before = env.run(heartbeat.seconds_until_beat)
    env.run(lambda: heartbeat.heartbeat_step("CRDs Established", more={"pending": ["a.b"]}))
    assert beats == [{HEARTBEAT_STEP: "CRDs Established", "pending": ["a.b"]}]
    assert due_before == 0 and env.run(heartbeat.seconds_until_beat) > INTERVAL
