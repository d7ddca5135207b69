"""Telling Temporal an activity is alive: progress heartbeats, resumed progress, blocking calls.

Where it sits: under the activities that wait or block (waits, serving, kube, helm). The
Kubernetes plumbing they drive (k8s/) knows nothing of Temporal; these helpers heartbeat while
it runs, at most every few seconds on change and at least that often while nothing changes, so
Temporal sees a live activity during a long wait, and a retry resumes from the last progress.
Outside an activity (the CLI calling the same code) heartbeats are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity

from spec.activity_io import HEARTBEAT_STEP

T = TypeVar("T")

HEARTBEAT_SECONDS = 5.0


class Heartbeater:
    """Heartbeat a progress model on change (at most every `min_interval`) and while idle."""

    def __init__(self, min_interval: float = 1.0, max_interval: float = HEARTBEAT_SECONDS) -> None:
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._last = 0.0
        self._last_details: dict[str, Any] | None = None

    def beat(self, progress: BaseModel, force: bool = False) -> None:
        details = progress.model_dump(mode="json")
        now = time.monotonic()
        changed = details != self._last_details
        due = now - self._last >= (self.min_interval if changed else self.max_interval)
        if force or due:
            with contextlib.suppress(RuntimeError):
                activity.heartbeat(details)
                _note_beat(activity.info())
            self._last = now
            self._last_details = details


def previous_progress(model: type[BaseModel]) -> Any:
    """The progress the last attempt heartbeated (validated as `model`), or None."""
    try:
        details = activity.info().heartbeat_details
    except RuntimeError:
        return None
    for detail in details or ():
        if isinstance(detail, dict):
            with contextlib.suppress(ValueError):
                return model.model_validate(detail)
        if isinstance(detail, model):
            return detail
    return None


async def run_blocking(function: Callable[[], T], step: str) -> T:
    """Run blocking client code on a thread, heartbeating `step` while it runs."""
    return await heartbeating(asyncio.to_thread(function), step)


async def heartbeating(work: Awaitable[T], step: str) -> T:
    """Await `work`, heartbeating `step` meanwhile; cancelled with the activity.

    The beat is due HEARTBEAT_SECONDS after the activity's last one (or its attempt's start),
    not after this call's start: an activity of several calls, each a little shorter than that
    (reading the holds, planning, waiting for the planning turn, with fifty rollouts sharing
    the worker), beat in none of them and was timed out, silent for over HEARTBEAT_TIMEOUT."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=seconds_until_beat())
            if done:
                return task.result()
            heartbeat_step(step)
    finally:
        if not task.done():
            task.cancel()
            # Read its end, so a cancelled call is not reported as an unretrieved exception.
            task.add_done_callback(lambda ended: ended.cancelled() or ended.exception())


# The release each activity has written, by (workflow run, activity ID), with the attempt that
# wrote it: every later beat keeps saying so, and a later attempt in this process knows it even
# when the beat that said so was throttled away before the attempt failed. Bounded: activities
# end long before this many others start.
_WROTE: dict[tuple[str, str, str], tuple[int, str]] = {}
_WROTE_KEPT = 4096

# When each attempt of an activity last beat (time.monotonic()), by (workflow run, activity ID,
# attempt). Bounded like _WROTE.
_LAST_BEAT: dict[tuple[str, str, str, int], float] = {}


def seconds_until_beat() -> float:
    """How long until this activity attempt's next beat is due (HEARTBEAT_SECONDS outside an
    activity: nothing beats there)."""
    try:
        info = activity.info()
    except RuntimeError:
        return HEARTBEAT_SECONDS
    last = _LAST_BEAT.get((*_activity_key(info), info.attempt))
    if last is not None:
        since = time.monotonic() - last
    else:
        started = info.started_time
        # The server's clock: a worker's clock behind it must not put the first beat off past
        # HEARTBEAT_SECONDS from now (one ahead of it only beats sooner).
        since = max(0.0, (datetime.now(UTC) - (
            started if started.tzinfo else started.replace(tzinfo=UTC)
        )).total_seconds())
    return max(0.0, HEARTBEAT_SECONDS - since)


def _note_beat(info: activity.Info) -> None:
    key = (*_activity_key(info), info.attempt)
    if key not in _LAST_BEAT and len(_LAST_BEAT) >= _WROTE_KEPT:
        _LAST_BEAT.pop(next(iter(_LAST_BEAT)))
    _LAST_BEAT[key] = time.monotonic()


def heartbeat_step(
    step: str, writing: str | None = None, more: dict[str, Any] | None = None
) -> None:
    """Heartbeat which step is running (nothing outside an activity), with `more` details of it,
    and the helm release this activity has written (helmcli/repair.py's proof that a pending
    release was ours).

    The release stays in every later beat of the activity, and of its later attempts: a beat
    without it (`helm history` before a retry) would otherwise replace the proof, and a release
    an attempt left `uninstalling` or pending could never be shown to be ours again."""
    with contextlib.suppress(RuntimeError):
        info = activity.info()
        key = _activity_key(info)
        if writing:
            if key not in _WROTE and len(_WROTE) >= _WROTE_KEPT:
                _WROTE.pop(next(iter(_WROTE)))
            _WROTE[key] = (info.attempt, writing)
        else:
            writing = _WROTE[key][1] if key in _WROTE else _written_before(info)
        activity.heartbeat(
            {HEARTBEAT_STEP: step, **(more or {}), **({"writing": writing} if writing else {})}
        )
        _note_beat(info)


def wrote_in_earlier_attempt(release: str) -> bool:
    """Whether an earlier attempt of this activity started helm on `release` (its heartbeats
    said so, or this process saw it): that helm has ended, with the attempt."""
    with contextlib.suppress(RuntimeError):
        info = activity.info()
        if info.attempt <= 1:
            return False
        attempt, wrote = _WROTE.get(_activity_key(info), (info.attempt, ""))
        return (wrote == release and attempt < info.attempt) or _written_before(info) == release
    return False


def _activity_key(info: activity.Info) -> tuple[str, str, str]:
    return (info.workflow_id or "", info.workflow_run_id or "", info.activity_id)


def _written_before(info: activity.Info) -> str | None:
    """The release an earlier attempt of this activity said (in its heartbeat) it wrote."""
    for detail in info.heartbeat_details or ():
        if isinstance(detail, dict) and isinstance(detail.get("writing"), str):
            return str(detail["writing"])
    return None
