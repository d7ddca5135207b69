"""Container logs as the kubelet keeps them: one buffer per container instance.

`select` implements the containerLogs query (tailLines, sinceSeconds, sinceTime, timestamps,
limitBytes); `follow` streams new lines until the container instance stops or the reader leaves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from clustersim.agent.meta import rfc3339_nano, utc_now

MAX_LINES = 20000


@dataclass(frozen=True)
class LogQuery:
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: dt.datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


@dataclass(frozen=True)
class LogLine:
    seq: int
    time: dt.datetime
    text: str

    def render(self, timestamps: bool) -> bytes:
        prefix = f"{rfc3339_nano(self.time)} " if timestamps else ""
        return f"{prefix}{self.text}\n".encode()


class ContainerLog:
    """The log of one container instance (a restart starts a new one)."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self._lines: deque[LogLine] = deque(maxlen=max_lines)
        self._next_seq = 0
        self._grew = asyncio.Event()
        self.closed = False

    def write(self, text: str) -> None:
        """Append one or more lines (split on newlines) with the current time."""
        if self.closed:
            return
        now = utc_now()
        for line in text.split("\n"):
            self._lines.append(LogLine(self._next_seq, now, line))
            self._next_seq += 1
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        grew, self._grew = self._grew, asyncio.Event()
        grew.set()

    def lines(self) -> list[LogLine]:
        return list(self._lines)

    def text(self) -> str:
        return "".join(line.text + "\n" for line in self._lines)

    def _initial(self, query: LogQuery) -> list[LogLine]:
        lines = list(self._lines)
        since = query.since_time
        if query.since_seconds is not None:
            since = utc_now() - dt.timedelta(seconds=query.since_seconds)
        if since is not None:
            lines = [line for line in lines if line.time >= since]
        if query.tail_lines is not None:
            lines = lines[-query.tail_lines :] if query.tail_lines > 0 else []
        return lines

    def select(self, query: LogQuery) -> bytes:
        data = b"".join(line.render(query.timestamps) for line in self._initial(query))
        if query.limit_bytes is not None:
            data = data[: query.limit_bytes]
        return data

    def _since(self, seq: int) -> list[LogLine]:
        """Lines with sequence number >= seq (the deque holds consecutive numbers)."""
        first = self._lines[0].seq if self._lines else self._next_seq
        return list(itertools.islice(self._lines, max(0, seq - first), None))

    async def follow(self, query: LogQuery) -> AsyncIterator[bytes]:
        """The selected lines, then every new line until the container stops."""
        sent = 0
        initial = self._initial(query)
        next_seq = initial[-1].seq + 1 if initial else self._next_seq
        pending = initial
        while True:
            for line in pending:
                chunk = line.render(query.timestamps)
                if query.limit_bytes is not None:
                    chunk = chunk[: max(0, query.limit_bytes - sent)]
                    if not chunk:
                        return
                sent += len(chunk)
                yield chunk
            if self._next_seq <= next_seq:
                if self.closed:
                    return
                await self._grew.wait()
            pending = self._since(next_seq)
            if pending:
                next_seq = pending[-1].seq + 1
