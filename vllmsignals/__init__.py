"""What vLLM tells us about itself: weight-loading progress in its log, counters in /metrics.

Where it sits: pure parsing under activities/serving.py (the model-load wait) and
activities/verification.py; it knows nothing of Kubernetes or Temporal.
"""

from vllmsignals.loadlog import LoadLog, server_up, shard_progress
from vllmsignals.metrics import (
    COUNTERS,
    GENERATION_TOKENS,
    PROMPT_TOKENS,
    REQUEST_SUCCESS,
    counter_sums,
    delta,
)

__all__ = [
    "COUNTERS",
    "GENERATION_TOKENS",
    "PROMPT_TOKENS",
    "REQUEST_SUCCESS",
    "LoadLog",
    "counter_sums",
    "delta",
    "server_up",
    "shard_progress",
]
