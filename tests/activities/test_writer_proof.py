"""The proof that a pending helm release was this activity's own (activities/heartbeat.py): once
an attempt has started helm on a release, every later beat says so, and a later attempt knows it
from the heartbeats or from this worker process, even when a beat without it came in between
(the fault matrix: a repair cut short left `uninstalling`, the next attempt's `helm history` beat
replaced the proof, and the release waited out the 30-minute age rule)."""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.heartbeat import heartbeat_step, wrote_in_earlier_attempt

RELEASE = "istio-system/istiod"


def environment(
    activity_id: str, attempt: int, details: list[Any]
) -> tuple[ActivityEnvironment, list[Any]]:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, activity_id=activity_id, attempt=attempt, heartbeat_details=details
    )
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.extend(details)
    return env, beats


def test_a_later_beat_and_a_later_attempt_keep_the_release_an_earlier_attempt_wrote() -> None:
    env, beats = environment("keep-1", 3, [{"step": "helm uninstall", "writing": RELEASE}])

    def attempt() -> tuple[bool, bool]:
        heartbeat_step("helm history istiod")
        return wrote_in_earlier_attempt(RELEASE), wrote_in_earlier_attempt("lws-system/lws")

    assert env.run(attempt) == (True, False)
    assert beats == [{"step": "helm history istiod", "writing": RELEASE}]


def test_this_process_remembers_a_write_whose_beat_never_reached_the_server() -> None:
    first, _ = environment("keep-2", 1, [])

    def writes() -> bool:
        heartbeat_step("helm upgrade --install istiod", RELEASE)
        # The same attempt proves nothing: its helm may still be the one running.
        return wrote_in_earlier_attempt(RELEASE)

    assert first.run(writes) is False
    # The next attempt got no heartbeat details (the beat was throttled away when helm was killed).
    second, beats = environment("keep-2", 2, [])
    assert second.run(lambda: wrote_in_earlier_attempt(RELEASE)) is True
    second.run(lambda: heartbeat_step("helm history istiod"))
    assert beats == [{"step": "helm history istiod", "writing": RELEASE}]


def test_an_activity_that_never_wrote_proves_nothing() -> None:
    env, beats = environment("keep-3", 2, [{"step": "helm history istiod"}])
    assert env.run(lambda: wrote_in_earlier_attempt(RELEASE)) is False
    env.run(lambda: heartbeat_step("helm history istiod"))
    assert beats == [{"step": "helm history istiod"}]
