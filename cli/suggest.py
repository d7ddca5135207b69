""""Did you mean ...?": the closest known verb or target to a mistyped one.

Where it sits: cli.parser asks `did_you_mean` when argparse refuses a verb (or a schedule
action); cli.errors.NoSuchRollout carries the hint `known_targets` finds through Temporal
visibility (the targets of recent rollouts, by the LlmdTarget search attribute).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from temporalio.client import Client
from temporalio.service import RPCError

from workflows import search

# How many recent runs are read to learn the targets a namespace knows.
KNOWN_TARGETS_SCAN = 200
# difflib's similarity ratio below which a guess would confuse more than help. Targets share
# their shape (`<cluster>/<namespace>/<name>`), so one must be closer to count.
CUTOFF = 0.6
TARGET_CUTOFF = 0.8
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<word>[^']*)' \(choose from (?P<choices>.*)\)")


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str:
    """`; did you mean 'status'?` for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f"; did you mean '{close[0]}'?" if close else ""


def invalid_choice_hint(message: str) -> str:
    """argparse's "invalid choice: 'x' (choose from 'a', 'b')" with the closest choice named."""
    match = _INVALID_CHOICE.search(message)
    if match is None:
        return message
    choices = re.findall(r"'([^']*)'", match.group("choices"))
    return message + did_you_mean(match.group("word"), choices)


async def known_targets(client: Client) -> list[str]:
    """The targets of the namespace's recent rollouts, teardowns and upgrades, newest first."""
    found: dict[str, None] = {}
    query = f"{search.TARGET.name} IS NOT NULL"
    async for execution in client.list_workflows(query, limit=KNOWN_TARGETS_SCAN):
        target = execution.typed_search_attributes.get(search.TARGET)
        if target:
            found.setdefault(target)
    return list(found)


async def target_hint(client: Client, target: str) -> str:
    """`; did you mean 'clustersim/llm-d-wide-ep/wide-ep'?`, or "" (also when visibility
    cannot answer: a hint must never turn one error into another)."""
    try:
        return did_you_mean(target, await known_targets(client), TARGET_CUTOFF)
    except RPCError:
        return ""
