"""Deterministic stand-ins for tokenization and generation, so tests can predict answers."""

from __future__ import annotations

import re

from clustersim.agent.meta import fnv32a

_TOKEN = re.compile(r"\w+|[^\w\s]")
_TEXT = (
    "the model routes each token through a few experts and the cache keeps every key and "
    "value close to the decode ranks while prefill pods compute the prompt once and send "
    "blocks over the fabric so the answer grows one step at a time"
)
_WORDS = tuple(_TEXT.split())


def count_tokens(text: str) -> int:
    return max(1, len(_TOKEN.findall(text)))


def generate(prompt: str, max_tokens: int) -> str:
    """`max_tokens` words chosen by a hash of the prompt: same prompt, same text."""
    seed = fnv32a(prompt.encode())
    words = []
    for step in range(max_tokens):
        seed = (seed * 1103515245 + 12345 + step) & 0x7FFFFFFF
        words.append(_WORDS[seed % len(_WORDS)])
    return " " + " ".join(words) if words else ""
