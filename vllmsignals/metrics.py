"""Reading vLLM's Prometheus /metrics: the counters verification compares before and after.

Where it sits: activities/verification.py reads each prefill and decode pod's /metrics around the
verification request; a role took part in the request when its counters moved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
REQUEST_SUCCESS = "vllm:request_success_total"
COUNTERS = (PROMPT_TOKENS, GENERATION_TOKENS, REQUEST_SUCCESS)

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def counter_sums(text: str, names: Iterable[str] = COUNTERS) -> dict[str, float]:
    """Each counter summed over its label sets (engines, finish reasons); 0 when absent."""
    wanted = set(names)
    sums = dict.fromkeys(wanted, 0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match or match.group(1) not in wanted:
            continue
        try:
            sums[match.group(1)] += float(match.group(3))
        except ValueError:
            continue
    return sums


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
