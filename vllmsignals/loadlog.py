"""What a vLLM server's log says about its start: weight-loading progress and readiness.

Where it sits: activities/serving.py follows each pod's vLLM log while the model loads and feeds
every line to `LoadLog`; the progress goes into heartbeats, and "the API server is up" tells the
wait to probe /health now instead of at its next fallback tick.
"""

from __future__ import annotations

import itertools
import re
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

# vLLM prints tqdm bars: "Loading safetensors checkpoint shards:  45% Completed | 73/163 [...]".
_SHARDS = re.compile(
    r"Loading safetensors checkpoint shards:\s*(\d{1,3})% Completed(?:\s*\|\s*(\d+)/(\d+))?"
)
_SERVER_UP = (
    re.compile(r"Starting vLLM API server(?: \d+)? on http://\S+:(\d+)"),
    re.compile(r"Application startup complete"),
    re.compile(r"Uvicorn running on http://\S+:(\d+)"),
)
# Per-request throughput lines repeat every few seconds once serving: not evidence of anything.
_NOISE = re.compile(r"Avg prompt throughput")
TAIL_LINES = 40
# Weight loading that has not advanced for this many times its own pace has stopped.
STALL_PACES = 3.0
REPLAY_GAP = 0.05


@dataclass(frozen=True)
class ShardProgress:
    percent: float
    loaded: int | None = None
    total: int | None = None


def shard_progress(line: str) -> ShardProgress | None:
    match = _SHARDS.search(line)
    if not match:
        return None
    loaded, count = match.group(2), match.group(3)
    return ShardProgress(
        percent=float(match.group(1)),
        loaded=int(loaded) if loaded else None,
        total=int(count) if count else None,
    )


def server_up(line: str) -> bool:
    return any(pattern.search(line) for pattern in _SERVER_UP)


@dataclass
class LoadLog:
    """The state of one pod's vLLM log as its lines arrive: progress, readiness, the last lines."""

    percent: float | None = None
    server_started: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    progress_times: list[float] = field(default_factory=list)

    def feed(self, line: str) -> bool:
        """Take one line; True when it changed what a heartbeat would report."""
        line = line.rstrip("\r\n")
        if not line or _NOISE.search(line):
            return False
        self.tail.append(line)
        progress = shard_progress(line)
        if progress is not None and progress.percent != self.percent:
            self.percent = progress.percent
            now = time.monotonic()
            if self.progress_times and now - self.progress_times[-1] < REPLAY_GAP:
                # Lines replayed in a burst (a follow that started late): no pace in them.
                self.progress_times[-1] = now
            else:
                self.progress_times.append(now)
            return True
        if not self.server_started and server_up(line):
            self.server_started = True
            return True
        return False

    def stalled_for(self, now: float, floor: float) -> float | None:
        """Seconds weight loading has not advanced, if that is more than `STALL_PACES` times
        the pace it kept so far (and at least `floor`); None while it advances or is done.
        Only the shard phase is judged: after 100% vLLM may be silent for minutes (warm-up,
        CUDA graph capture) without being stuck."""
        if self.percent is None or self.percent >= 100 or len(self.progress_times) < 3:
            return None
        silent = now - self.progress_times[-1]
        return silent if silent > self.stall_after(floor) else None

    def stall_after(self, floor: float) -> float:
        """How long a silence in the shard phase may last before it counts as a stall."""
        times = self.progress_times
        if len(times) < 3:
            return float("inf")
        pace = statistics.median(b - a for a, b in itertools.pairwise(times))
        return max(STALL_PACES * pace, floor)
