"""Judging updated vLLM pods against stable ones from their Prometheus histograms and counters.

Where it sits: pure logic under the analysis activity (activities/analysis.py), which reads the
metrics (each pod's /metrics at both ends of the window, or a Prometheus server's increases) and
hands them here as PodSignals; the criteria are the spec's `analysis` gate (spec/analysis.py).

- A histogram's window is the difference of its cumulative buckets (a counter reset, i.e. a
  restarted pod, counts from zero); a quantile is read as Prometheus' histogram_quantile does:
  linear interpolation inside the bucket holding the rank, the highest finite bound if it falls
  in +Inf.
- Requests and errors are the completion handlers' HTTP status counts (2xx, 5xx) that vLLM's API
  server exports; when they are absent, vLLM's request_success_total stands for the requests.
- Prefill and decode took part: a decode canary's requests took their KV cache over NIXL (its
  transfer count against its requests), a prefill canary served requests.
- A check with fewer than `min_requests` samples on either side cannot be judged. Verdict: fail
  if any check failed, else inconclusive if any could not be judged (or none applied), else pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from spec.analysis import Analysis
from spec.analysis_io import AnalysisResult, GroupNumbers, MetricCheck, Verdict
from spec.rollout import RoleName

TTFT = "vllm:time_to_first_token_seconds"
TPOT = "vllm:time_per_output_token_seconds"
E2E = "vllm:e2e_request_latency_seconds"
KV_TRANSFER = "vllm:nixl_xfer_time_seconds"
HTTP_REQUESTS = "http_requests_total"
REQUEST_SUCCESS = "vllm:request_success_total"
HISTOGRAMS = (TTFT, TPOT, E2E)
COMPLETION_HANDLERS = ("/v1/completions", "/v1/chat/completions")
LATENCY_METRICS = (("ttft", TTFT), ("tpot", TPOT), ("e2e", E2E))
Bound = Literal["relative", "absolute", "share"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound (the last bound is +Inf), summed over series."""

    buckets: tuple[tuple[float, float], ...] = ()

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def plus(self, other: Histogram) -> Histogram:
        merged: dict[float, float] = dict(self.buckets)
        for bound, count in other.buckets:
            merged[bound] = merged.get(bound, 0.0) + count
        return Histogram(tuple(sorted(merged.items())))

    def since(self, earlier: Histogram) -> Histogram:
        """The observations after `earlier`; all of them when the counter went backwards."""
        before = dict(earlier.buckets)
        if any(count < before.get(bound, 0.0) for bound, count in self.buckets):
            return self
        return Histogram(tuple((b, c - before.get(b, 0.0)) for b, c in self.buckets))

    def quantile(self, q: float) -> float | None:
        total = self.count
        if total <= 0:
            return None
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in self.buckets:
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                if count == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                    count - lower_count
                )
            lower_bound, lower_count = bound, count
        return lower_bound


@dataclass(frozen=True)
class PodSignals:
    """What one pod (or a group, summed) tells about its requests, cumulative or over a window."""

    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    ok: float = 0.0
    errors: float = 0.0
    kv_transfers: float = 0.0

    def histogram(self, name: str) -> Histogram:
        return self.histograms.get(name, Histogram())

    @property
    def requests(self) -> float:
        return self.ok + self.errors

    def plus(self, other: PodSignals) -> PodSignals:
        names = set(self.histograms) | set(other.histograms)
        return PodSignals(
            {n: self.histogram(n).plus(other.histogram(n)) for n in names},
            self.ok + other.ok,
            self.errors + other.errors,
            self.kv_transfers + other.kv_transfers,
        )

    def since(self, earlier: PodSignals) -> PodSignals:
        def moved(after: float, before: float) -> float:
            return after - before if after >= before else after

        return PodSignals(
            {n: h.since(earlier.histogram(n)) for n, h in self.histograms.items()},
            moved(self.ok, earlier.ok),
            moved(self.errors, earlier.errors),
            moved(self.kv_transfers, earlier.kv_transfers),
        )


def combine(signals: Iterable[PodSignals]) -> PodSignals:
    total = PodSignals()
    for one in signals:
        total = total.plus(one)
    return total


def _bound(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def parse_signals(text: str) -> PodSignals:
    """The analysis' view of one /metrics answer (Prometheus text exposition)."""
    buckets: dict[str, dict[float, float]] = {name: {} for name in HISTOGRAMS}
    status: dict[str, float] = {}
    success = kv = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, raw_labels, raw_value = match.groups()
        try:
            value = float(raw_value)
        except ValueError:
            continue
        labels = dict(_LABEL.findall(raw_labels or ""))
        if name.endswith("_bucket") and name[: -len("_bucket")] in buckets and "le" in labels:
            series = buckets[name[: -len("_bucket")]]
            bound = _bound(labels["le"])
            series[bound] = series.get(bound, 0.0) + value
        elif name == HTTP_REQUESTS and labels.get("handler") in COMPLETION_HANDLERS:
            group = labels.get("status", "")[:1]
            status[group] = status.get(group, 0.0) + value
        elif name == REQUEST_SUCCESS:
            success += value
        elif name == f"{KV_TRANSFER}_count":
            kv += value
    histograms = {n: Histogram(tuple(sorted(b.items()))) for n, b in buckets.items() if b}
    return pod_signals(histograms, status, success, kv)


def pod_signals(
    histograms: Mapping[str, Histogram],
    status_classes: Mapping[str, float],
    success: float,
    kv_transfers: float,
) -> PodSignals:
    """PodSignals from completion counts by status class ("2", "5"); without any, vLLM's
    request_success_total counts the requests (and no errors are known)."""
    ok = status_classes.get("2", success) if status_classes else success
    return PodSignals(histograms, ok, status_classes.get("5", 0.0), kv_transfers)


# --- judgement --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    pods: Sequence[str]
    window: PodSignals


def numbers(group: Group, quantile: float) -> GroupNumbers:
    window = group.window
    return GroupNumbers(
        pods=list(group.pods),
        requests=window.requests,
        errors=window.errors,
        error_rate=window.errors / window.requests if window.requests else None,
        ttft_seconds=window.histogram(TTFT).quantile(quantile),
        tpot_seconds=window.histogram(TPOT).quantile(quantile),
        e2e_seconds=window.histogram(E2E).quantile(quantile),
        kv_transfers=window.kv_transfers,
    )


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.1f}ms" if unit == "s" else f"{value:.2%}"


class _Judge:
    def __init__(
        self, analysis: Analysis, canary: Group, stable: Group | None, role: RoleName
    ) -> None:
        self.analysis = analysis
        self.canary = canary
        self.stable = stable if stable is not None and stable.pods else None
        self.role = role
        self.label = f"p{analysis.quantile * 100:g}"
        self.checks: list[MetricCheck] = []

    def _enough(self, samples: float) -> bool:
        return samples >= self.analysis.min_requests

    def latency(self, metric: str, series: str) -> None:
        q = self.analysis.quantile
        canary_h = self.canary.window.histogram(series)
        canary = canary_h.quantile(q)
        name = f"{metric} {self.label}"
        absolute = getattr(self.analysis.thresholds, f"{metric}_seconds")
        if absolute is not None:
            self._check_absolute(metric, name, canary, canary_h.count, absolute, "s")
        ratio = getattr(self.analysis.compare, metric)
        if ratio is None or self.stable is None:
            return
        stable_h = self.stable.window.histogram(series)
        stable = stable_h.quantile(q)
        if not (self._enough(canary_h.count) and self._enough(stable_h.count)):
            self._unjudged(metric, canary, stable, "relative", name, canary_h.count, stable_h.count)
            return
        assert canary is not None and stable is not None
        limit = stable * ratio
        passed = canary <= limit
        self.checks.append(MetricCheck(
            metric=metric, canary=canary, stable=stable, limit=limit, bound="relative",
            passed=passed,
            detail=f"{name} {_fmt(canary, 's')} on the canary vs {_fmt(stable, 's')} on stable: "
            + ("within" if passed else "above") + f" {ratio:g} x stable = {_fmt(limit, 's')}",
        ))

    def _check_absolute(
        self, metric: str, name: str, canary: float | None, samples: float, limit: float,
        unit: str,
    ) -> None:
        if not self._enough(samples) or canary is None:
            self._unjudged(metric, canary, None, "absolute", name, samples, None)
            return
        passed = canary <= limit
        self.checks.append(MetricCheck(
            metric=metric, canary=canary, limit=limit, bound="absolute", passed=passed,
            detail=f"{name} {_fmt(canary, unit)} on the canary: "
            + ("within" if passed else "above") + f" the threshold {_fmt(limit, unit)}",
        ))

    def _unjudged(
        self, metric: str, canary: float | None, stable: float | None,
        bound: Bound, name: str, canary_n: float, stable_n: float | None,
    ) -> None:
        seen = f"{canary_n:g} canary" + ("" if stable_n is None else f", {stable_n:g} stable")
        self.checks.append(MetricCheck(
            metric=metric, canary=canary, stable=stable, bound=bound,
            passed=None,
            detail=f"{name}: too few requests to judge ({seen}; at least "
            f"{self.analysis.min_requests} needed in each)",
        ))

    def errors(self) -> None:
        window = self.canary.window
        rate = window.errors / window.requests if window.requests else None
        absolute = self.analysis.thresholds.error_rate
        if absolute is not None:
            self._check_absolute("error_rate", "error rate", rate, window.requests, absolute, "%")
        increase = self.analysis.compare.error_rate_increase
        if increase is None or self.stable is None:
            return
        stable_w = self.stable.window
        stable = stable_w.errors / stable_w.requests if stable_w.requests else None
        if not (self._enough(window.requests) and self._enough(stable_w.requests)):
            self._unjudged("error_rate", rate, stable, "relative", "error rate",
                           window.requests, stable_w.requests)
            return
        assert rate is not None and stable is not None
        limit = stable + increase
        passed = rate <= limit
        self.checks.append(MetricCheck(
            metric="error_rate", canary=rate, stable=stable, limit=limit, bound="relative",
            passed=passed,
            detail=f"error rate {_fmt(rate, '%')} on the canary ({window.errors:g} of "
            f"{window.requests:g}) vs {_fmt(stable, '%')} on stable: "
            + ("within" if passed else "above") + f" stable + {increase:g} = {_fmt(limit, '%')}",
        ))

    def prefill_decode(self) -> None:
        if not self.analysis.require_prefill_decode:
            return
        window = self.canary.window
        if not self._enough(window.ok):
            self._unjudged("prefill_decode", None, None, "share", "prefill/decode",
                           window.ok, None)
            return
        if self.role == "prefill":
            self.checks.append(MetricCheck(
                metric="prefill_decode", canary=window.ok, bound="share", passed=True,
                detail=f"prefill canary served {window.ok:g} requests",
            ))
            return
        share = window.kv_transfers / window.ok
        stable = None
        if self.stable is not None and self.stable.window.ok:
            stable = self.stable.window.kv_transfers / self.stable.window.ok
        limit = self.analysis.min_kv_transfer_share
        passed = share >= limit
        versus = "" if stable is None else f" vs {_fmt(stable, '%')} on stable"
        self.checks.append(MetricCheck(
            metric="prefill_decode", canary=share, stable=stable, limit=limit, bound="share",
            passed=passed,
            detail=f"KV cache from prefill pods (NIXL transfers) for {_fmt(share, '%')} of the "
            f"canary's requests ({window.kv_transfers:g} of {window.ok:g}){versus}: "
            + ("at least" if passed else "below") + f" {_fmt(limit, '%')}"
            + ("" if passed else "; the decode pods computed the prompts themselves"),
        ))


def verdict_of(checks: Sequence[MetricCheck]) -> Verdict:
    if any(c.passed is False for c in checks):
        return "fail"
    if not checks or any(c.passed is None for c in checks):
        return "inconclusive"
    return "pass"


def judge(
    analysis: Analysis,
    role: RoleName,
    canary: Group,
    stable: Group | None,
    *,
    window_seconds: float,
    source: str,
    load_requests: int = 0,
    load_failures: int = 0,
) -> AnalysisResult:
    """The verdict on `canary` (the role's updated pods) against `stable` (None or no pods: a
    first install or a fully rolled role, judged on the absolute thresholds alone)."""
    judge_ = _Judge(analysis, canary, stable, role)
    for metric, series in LATENCY_METRICS:
        judge_.latency(metric, series)
    judge_.errors()
    judge_.prefill_decode()
    checks = judge_.checks
    verdict = verdict_of(checks)
    failed = [c.detail for c in checks if c.passed is False]
    unjudged = [c.detail for c in checks if c.passed is None]
    if verdict == "fail":
        summary = "; ".join(failed)
    elif verdict == "inconclusive":
        summary = "; ".join(unjudged) or "nothing to compare: no stable pods and no thresholds"
    else:
        summary = "; ".join(c.detail for c in checks)
    return AnalysisResult(
        verdict=verdict,
        summary=summary,
        checks=checks,
        canary=numbers(canary, analysis.quantile),
        stable=numbers(judge_.stable, analysis.quantile) if judge_.stable else None,
        quantile=analysis.quantile,
        window_seconds=window_seconds,
        source="prometheus" if source == "prometheus" else "direct",
        load_requests=load_requests,
        load_failures=load_failures,
    )
