"""The `analysis` gate of the rollout spec: judge the updated pods on vLLM's own metrics.

Where it sits: a section of spec.rollout (`strategy.<role>.steps[].analysis` after a partition
step, `strategy.<role>.analysis` after the role is fully rolled); the workflow (workflows/
analysis.py) runs it through the analysis activity, which reads the metrics and calls the pure
judgement in vllmsignals/analysis.py with these criteria.

For a window the updated ("canary") pods of the role are compared with its not yet updated
("stable") pods, on time to first token, time per output token, end-to-end latency (each at
`quantile`, from the histograms' bucket deltas), the request error rate, and that prefill and
decode both took part. `compare` bounds the canary relative to stable; `thresholds` are absolute
bounds that apply whether or not a stable group exists (a role fully rolled has none).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from spec.types import Duration


class AnalysisModel(BaseModel):
    """As spec.rollout.SpecModel (camelCase, unknown fields rejected, immutable)."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


class RelativeBounds(AnalysisModel):
    """Canary / stable ratios not to exceed (1.25: at most 25% slower); the error rate may
    exceed stable's by `errorRateIncrease` (0.01: one percentage point)."""

    ttft: float | None = Field(default=1.25, gt=0)
    tpot: float | None = Field(default=1.25, gt=0)
    e2e: float | None = Field(default=1.25, gt=0, alias="e2e")
    error_rate_increase: float | None = Field(default=0.01, ge=0, le=1)


class AbsoluteBounds(AnalysisModel):
    """Limits for the canary whatever stable does (seconds at the quantile; error share)."""

    ttft_seconds: float | None = Field(default=None, gt=0)
    tpot_seconds: float | None = Field(default=None, gt=0)
    e2e_seconds: float | None = Field(default=None, gt=0, alias="e2eSeconds")
    error_rate: float | None = Field(default=None, ge=0, le=1)


class SyntheticLoad(AnalysisModel):
    """Completions the analysis sends through the gateway during its window, bounded in rate,
    count and time (the window). Without it, live traffic is analysed."""

    requests_per_second: float = Field(default=2.0, gt=0, le=50)
    prompt_tokens: int = Field(default=256, ge=1, le=32768)
    max_tokens: int = Field(default=16, ge=1, le=4096)
    max_requests: int = Field(default=600, ge=1, le=10000)


class PrometheusSource(AnalysisModel):
    """A Prometheus server that scrapes the vLLM pods; series carry the pod and namespace in
    these labels."""

    url: str = Field(min_length=1)
    pod_label: str = "pod"
    namespace_label: str = "namespace"
    scrape_interval: Duration = Field(
        default=timedelta(seconds=15),
        description="The server's scrape interval: the analysis waits this long after its "
        "window so the window's last requests are scraped, and widens the range by it.",
    )
    request_timeout: Duration = timedelta(seconds=30)


class Analysis(AnalysisModel):
    window: Duration = timedelta(seconds=60)
    quantile: float = Field(default=0.9, gt=0, lt=1)
    min_requests: int = Field(
        default=20, ge=1, description="Fewer requests in a group than this: inconclusive."
    )
    compare: RelativeBounds = Field(default_factory=RelativeBounds)
    thresholds: AbsoluteBounds = Field(default_factory=AbsoluteBounds)
    require_prefill_decode: bool = Field(
        default=True,
        description="Decode canaries must take their KV cache from prefill pods (NIXL transfers "
        "for at least `minKvTransferShare` of their requests); prefill canaries must serve.",
    )
    min_kv_transfer_share: float = Field(default=0.9, ge=0, le=1)
    load: SyntheticLoad | None = None
    prometheus: PrometheusSource | None = Field(
        default=None, description="Read the metrics from Prometheus instead of the pods."
    )
    on_inconclusive: Literal["retry", "fail", "approval"] = "retry"
    max_retries: int = Field(default=2, ge=0, le=10)


def analysis_problems(analysis: Analysis) -> list[tuple[str, str]]:
    """(sub-path, message) for what the field types cannot say; spec.validation prefixes it."""
    problems: list[tuple[str, str]] = []
    prometheus = analysis.prometheus
    if prometheus is not None and not prometheus.url.startswith(("http://", "https://")):
        problems.append((".prometheus.url", f"must be an http(s) URL, got {prometheus.url!r}"))
    compare, thresholds = analysis.compare, analysis.thresholds
    if (
        all(v is None for v in compare.model_dump().values())
        and all(v is None for v in thresholds.model_dump().values())
        and not analysis.require_prefill_decode
    ):
        problems.append(("", "judges nothing: set compare, thresholds or requirePrefillDecode"))
    load = analysis.load
    if load is not None:
        expected = load.requests_per_second * analysis.window.total_seconds()
        if expected < analysis.min_requests:
            problems.append((
                ".load.requestsPerSecond",
                f"sends about {expected:g} requests in the {analysis.window.total_seconds():g}s "
                f"window, fewer than minRequests ({analysis.min_requests}): never conclusive",
            ))
    return problems
