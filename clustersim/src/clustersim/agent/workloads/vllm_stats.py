"""Request latencies of the fake vLLM and the Prometheus histograms they land in.

Where it sits: VllmEngine (workloads/vllm.py) asks the LatencyModel what each request it serves
would have cost on the real engine, and records the answer in vLLM's own histograms
(`vllm:time_to_first_token_seconds`, `vllm:time_per_output_token_seconds`,
`vllm:e2e_request_latency_seconds`, `vllm:nixl_xfer_time_seconds`) with vLLM's bucket bounds.
Nothing sleeps for these latencies: they are simulated seconds, reported, never waited.

The model, in simulated seconds: a local prefill costs a fixed step plus the prompt at a prefill
rate, slowed by the requests already running; a decode whose KV cache came from a prefill pod
pays the NIXL transfer (growing with the prompt) and one decode step instead. Each output token
costs one decode step, also slowed by load. A seeded random multiplier (per engine, from its pod
IP) spreads the values the way real requests spread, and is the same on every run.

A `degrade` fault (clustersim.agent.faults) stages a regression on the pods of one image: TTFT
multiplied, a share of requests failing with HTTP 500, or the decode ignoring the prefill's KV
cache (P/D not used: it recomputes the prompt locally and transfers nothing).
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field

# vLLM's own bucket bounds (vllm/v1/metrics/loggers.py), so percentiles read here are as coarse
# or as fine as they are on a real server.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)
TPOT_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)
NIXL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0)

# Simulated costs (seconds) of a DeepSeek-class model on H200s, rounded.
PREFILL_STEP = 0.015
PREFILL_TOKENS_PER_SECOND = 12000.0
DECODE_STEP = 0.028
NIXL_SETUP = 0.004
NIXL_SECONDS_PER_TOKEN = 0.00002
# Each running request slows a step by this share (batching is not free).
LOAD_SLOWDOWN = 0.08
JITTER_SIGMA = 0.18


@dataclass
class Histogram:
    """A Prometheus histogram: cumulative bucket counts, sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.observations += 1

    def render(self, name: str, help_text: str, labels: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for bound, count in zip(self.bounds, self.counts, strict=True):
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {float(count)}')
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(self.observations)}')
        lines.append(f"{name}_sum{{{labels}}} {self.total}")
        lines.append(f"{name}_count{{{labels}}} {float(self.observations)}")
        return lines


@dataclass(frozen=True)
class Degradation:
    """What a `degrade` fault does to one engine; the default changes nothing."""

    ttft_factor: float = 1.0
    error_rate: float = 0.0
    no_pd: bool = False


@dataclass(frozen=True)
class RequestCost:
    ttft: float
    tpot: float
    e2e: float
    kv_transfer: float | None


class LatencyModel:
    """Simulated latencies of one engine's requests; seeded by the pod IP, so repeatable."""

    def __init__(self, seed_text: str, degradation: Degradation) -> None:
        self._random = random.Random(zlib.crc32(seed_text.encode()))
        self.degradation = degradation
        self._served = 0
        self._failed = 0

    def fails_next(self) -> bool:
        """Whether the next request fails: `error_rate` of them, evenly spread (the first at
        half the period, so a few requests per pod already show it: 5% fails the 10th)."""
        self._served += 1
        due = math.floor(self._served * self.degradation.error_rate + 0.5) > self._failed
        if due:
            self._failed += 1
        return due

    def _jitter(self) -> float:
        return self._random.lognormvariate(0.0, JITTER_SIGMA)

    def cost(
        self, prompt_tokens: int, generated: int, running: int, remote_prefill: bool
    ) -> RequestCost:
        """What one request costs: `remote_prefill` when its KV cache came from a prefill pod."""
        slowdown = 1.0 + LOAD_SLOWDOWN * max(0, running)
        kv_transfer: float | None = None
        if remote_prefill and not self.degradation.no_pd:
            kv_transfer = (NIXL_SETUP + NIXL_SECONDS_PER_TOKEN * prompt_tokens) * self._jitter()
            ttft = kv_transfer + DECODE_STEP * slowdown * self._jitter()
        else:
            compute = PREFILL_STEP + prompt_tokens / PREFILL_TOKENS_PER_SECOND
            ttft = compute * slowdown * self._jitter()
        ttft *= self.degradation.ttft_factor
        tpot = DECODE_STEP * slowdown * self._jitter()
        e2e = ttft + tpot * max(0, generated - 1)
        return RequestCost(ttft, tpot, e2e, kv_transfer)


@dataclass
class LatencyHistograms:
    """The histograms one engine exports, filled from RequestCosts."""

    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    tpot: Histogram = field(default_factory=lambda: Histogram(TPOT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    nixl: Histogram = field(default_factory=lambda: Histogram(NIXL_BUCKETS))

    def record(self, cost: RequestCost, generated: int) -> None:
        self.ttft.observe(cost.ttft)
        # vLLM observes time per output token only for requests with more than one.
        if generated > 1:
            self.tpot.observe(cost.tpot)
        self.e2e.observe(cost.e2e)
        if cost.kv_transfer is not None:
            self.nixl.observe(cost.kv_transfer)

    def render(self, labels: str, engine_labels: str) -> list[str]:
        return [
            *self.ttft.render(
                "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                labels,
            ),
            *self.tpot.render(
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.", labels,
            ),
            *self.e2e.render(
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.", labels,
            ),
            *self.nixl.render(
                "vllm:nixl_xfer_time_seconds",
                "Histogram of transfer duration for NIXL KV Cache transfers.", engine_labels,
            ),
        ]
