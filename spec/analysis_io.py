"""Input and result of the analysis activity: what was compared, the numbers, the verdict.

Where it sits: the workflow (workflows/analysis.py) sends an AnalysisInput to the analysis
activity (activities/analysis.py) and reads the AnalysisResult it returns; the judgement itself
is vllmsignals/analysis.py. The result is the evidence of an AnalysisFailed failure.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from spec.activity_io import IOModel
from spec.analysis import Analysis
from spec.rollout import RoleName, RolloutSpec

Verdict = Literal["pass", "fail", "inconclusive"]


class AnalysisInput(IOModel):
    spec: RolloutSpec
    role: RoleName
    analysis: Analysis
    step: str = Field(description="The plan step analysed, e.g. decode/partition-1.")


class GroupNumbers(IOModel):
    """One group of pods over the window (None: no request to read it from)."""

    pods: list[str]
    requests: float
    errors: float
    error_rate: float | None
    ttft_seconds: float | None
    tpot_seconds: float | None
    e2e_seconds: float | None
    kv_transfers: float


class MetricCheck(IOModel):
    """One comparison: `passed` None when it could not be judged (too few requests)."""

    metric: str = Field(description="ttft, tpot, e2e, error_rate or prefill_decode.")
    canary: float | None
    stable: float | None = None
    limit: float | None = Field(default=None, description="The bound the canary had to meet.")
    bound: Literal["relative", "absolute", "share"]
    passed: bool | None
    detail: str


class AnalysisResult(IOModel):
    verdict: Verdict
    summary: str
    checks: list[MetricCheck]
    canary: GroupNumbers
    stable: GroupNumbers | None = None
    quantile: float
    window_seconds: float
    source: Literal["direct", "prometheus"]
    load_requests: int = Field(default=0, description="Synthetic requests sent in the window.")
    load_failures: int = 0
