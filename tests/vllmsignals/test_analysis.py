"""The analysis judgement on hand-made Prometheus text: bucket deltas, quantiles, verdicts."""

from __future__ import annotations

import math

import pytest

from spec.analysis import AbsoluteBounds, Analysis, RelativeBounds
from spec.analysis_io import AnalysisResult
from spec.rollout import RoleName
from vllmsignals.analysis import (
    E2E,
    TPOT,
    TTFT,
    Group,
    Histogram,
    PodSignals,
    combine,
    judge,
    parse_signals,
)

BOUNDS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.25)


def exposition(
    ttft: list[float], *, ok: int, errors: int = 0, kv: int = 0, tpot: list[float] | None = None
) -> str:
    """A /metrics answer whose TTFT histogram holds `ttft` per bucket (not cumulative)."""
    lines = ["# TYPE vllm:time_to_first_token_seconds histogram"]
    for name, per_bucket in ((TTFT, ttft), (TPOT, tpot or ttft), (E2E, tpot or ttft)):
        running = 0.0
        for bound, count in zip(BOUNDS, per_bucket, strict=False):
            running += count
            lines.append(f'{name}_bucket{{engine="0",le="{bound}",model_name="m"}} {running}')
        lines.append(f'{name}_bucket{{engine="0",le="+Inf",model_name="m"}} {sum(per_bucket)}')
        lines.append(f'{name}_count{{engine="0",model_name="m"}} {sum(per_bucket)}')
    completions = 'http_requests_total{handler="/v1/completions",method="POST"'
    lines += [
        f'{completions},status="2xx"}} {ok}',
        f'{completions},status="5xx"}} {errors}',
        'http_requests_total{handler="/metrics",method="GET",status="2xx"} 999',
        f'vllm:request_success_total{{engine="0",finished_reason="length"}} {ok}',
        f'vllm:nixl_xfer_time_seconds_count{{engine="0"}} {kv}',
    ]
    return "\n".join(lines) + "\n"


def test_quantile_interpolates_linearly_inside_the_bucket_holding_the_rank() -> None:
    # 10 observations <= 0.02, 10 more in (0.02, 0.04]: p75 is rank 15, halfway in the second.
    histogram = Histogram(((0.02, 10.0), (0.04, 20.0), (math.inf, 20.0)))
    assert histogram.quantile(0.75) == pytest.approx(0.03)
    assert histogram.quantile(0.25) == pytest.approx(0.01)
    assert Histogram(((0.1, 0.0), (math.inf, 5.0))).quantile(0.5) == 0.1
    assert Histogram().quantile(0.9) is None


def test_window_is_the_bucket_delta_and_a_restart_counts_from_zero() -> None:
    before = parse_signals(exposition([5, 5, 0, 0, 0, 0], ok=10, kv=10))
    after = parse_signals(exposition([5, 5, 0, 0, 10, 0], ok=20, errors=1, kv=20))
    window = after.since(before)
    assert window.histogram(TTFT).count == 10
    # Only the window's ten requests, all in (0.08, 0.1].
    assert 0.08 < (window.histogram(TTFT).quantile(0.5) or 0) <= 0.1
    assert (window.ok, window.errors, window.kv_transfers) == (10, 1, 10)
    restarted = parse_signals(exposition([3, 0, 0, 0, 0, 0], ok=3))
    assert restarted.since(after).histogram(TTFT).count == 3
    assert restarted.since(after).ok == 3


def test_groups_sum_their_pods() -> None:
    one = parse_signals(exposition([4, 0, 0, 0, 0, 0], ok=4, kv=4))
    two = parse_signals(exposition([0, 4, 0, 0, 0, 0], ok=4, kv=3))
    both = combine([one, two])
    assert both.histogram(TTFT).count == 8 and both.ok == 8 and both.kv_transfers == 7


def group(ttft: list[float], ok: int, errors: int = 0, kv: int | None = None) -> Group:
    signals = parse_signals(exposition(ttft, ok=ok, errors=errors, kv=ok if kv is None else kv))
    return Group(["pod"], signals.since(PodSignals()))


def run(
    canary: Group, stable: Group | None, analysis: Analysis | None = None,
    role: RoleName = "decode",
) -> AnalysisResult:
    return judge(
        analysis or Analysis(min_requests=10), role, canary, stable,
        window_seconds=30, source="direct",
    )


def test_same_latencies_pass() -> None:
    result = run(group([0, 10, 10, 0, 0, 0], 20), group([0, 10, 10, 0, 0, 0], 20))
    assert result.verdict == "pass", result.summary
    assert {c.metric for c in result.checks} == {"ttft", "tpot", "e2e", "error_rate",
                                                 "prefill_decode"}


def test_slower_first_tokens_fail_naming_the_metric_both_values_and_the_limit() -> None:
    result = run(group([0, 0, 0, 10, 10, 0], 20), group([0, 10, 10, 0, 0, 0], 20))
    assert result.verdict == "fail"
    ttft = next(c for c in result.checks if c.metric == "ttft")
    assert ttft.passed is False and ttft.canary and ttft.stable and ttft.limit
    assert ttft.canary > ttft.limit == pytest.approx(ttft.stable * 1.25)
    assert result.summary.startswith("ttft p90 ")
    assert "on the canary vs" in result.summary and "1.25 x stable" in result.summary


def test_errors_fail_against_stable_plus_the_allowed_increase() -> None:
    result = run(group([0, 10, 10, 0, 0, 0], 19, errors=1), group([0, 10, 10, 0, 0, 0], 20))
    errors = next(c for c in result.checks if c.metric == "error_rate")
    assert result.verdict == "fail" and errors.passed is False
    assert errors.canary == pytest.approx(0.05) and errors.stable == 0
    assert "error rate 5.00% on the canary (1 of 20)" in result.summary


def test_decode_without_kv_transfers_fails_prefill_decode() -> None:
    result = run(group([0, 10, 10, 0, 0, 0], 20, kv=0), group([0, 10, 10, 0, 0, 0], 20))
    check = next(c for c in result.checks if c.metric == "prefill_decode")
    assert result.verdict == "fail" and check.passed is False and check.canary == 0
    assert check.stable == 1.0 and "computed the prompts themselves" in result.summary
    # A prefill canary has no transfers of its own: serving is what counts.
    prefill = run(group([0, 10, 10, 0, 0, 0], 20, kv=0), group([0, 10, 10, 0, 0, 0], 20),
                  role="prefill")
    assert prefill.verdict == "pass", prefill.summary


def test_too_few_requests_is_inconclusive() -> None:
    result = run(group([0, 2, 2, 0, 0, 0], 4), group([0, 10, 10, 0, 0, 0], 20))
    assert result.verdict == "inconclusive"
    assert "too few requests to judge (4 canary, 20 stable" in result.summary


def test_without_stable_pods_only_thresholds_judge() -> None:
    fast, slow = group([0, 10, 10, 0, 0, 0], 20), group([0, 0, 0, 0, 10, 10], 20)
    bounds = Analysis(min_requests=10, thresholds=AbsoluteBounds(ttft_seconds=0.08))
    assert run(fast, None, bounds).verdict == "pass"
    failed = run(slow, Group([], PodSignals()), bounds)
    assert failed.verdict == "fail" and failed.stable is None
    assert "above the threshold 80.0ms" in failed.summary
    # Nothing to compare with and no threshold for latencies: only errors and P/D would judge.
    loose = Analysis(min_requests=10, require_prefill_decode=False,
                     compare=RelativeBounds(error_rate_increase=None))
    assert run(fast, None, loose).verdict == "inconclusive"
