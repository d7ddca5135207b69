"""End to end: the analysis gate judges a decode canary on vLLM's own metrics, under synthetic
load through the gateway, against clustersim's fake vLLM with staged regressions.

One target (decode: two groups of two pods, prefill: one pod) is installed, then upgraded to a
new decode image per case: a TTFT regression (x1.6), an errors-only regression (5% of requests
answer 500) and a P/D-not-used regression (the decode recomputes prompts, no KV transfer) each
fail the analysis at the first partition step and roll back, each with its own evidence; the
same upgrade without a regression passes and completes.

A real Prometheus server scrapes the same pods throughout; the last test reads each case's
window from it (at the times the analysis step ran) and checks that the Prometheus source gives
the same verdicts and the same failing metric as the direct source did.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from rollouts.observing import rollout_result
from rollouts.starting import start_rollout
from spec.analysis import Analysis, PrometheusSource
from spec.analysis_io import AnalysisResult
from spec.reasons import FailureReason
from spec.rollout import RolloutSpec
from spec.workflow_io import Outcome, RolloutResult
from tests.prometheus_server import PrometheusServer, prometheus_binary, running_prometheus
from tests.simcluster import SimCluster, sim_cluster_fixture
from tests.workflows.e2e import TIME_SCALE, sim_spec, small_decode_pods
from tests.workflows.specs import Change, decode_steps
from vllmsignals.analysis import Group, combine, judge
from vllmsignals.prometheus import PrometheusQuery

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.long]

NAME = "analysis"
NAMESPACE = "llm-d-wide-ep"
ROLLOUT_TIMEOUT = 240.0
VLLM = "ghcr.io/llm-d/llm-d-dev"
# Ten completions a second for eight seconds: about 40 per group of two decode pods.
ANALYSIS: dict[str, Any] = {
    "window": "8s",
    "minRequests": 15,
    "load": {"requestsPerSecond": 10, "promptTokens": 256, "maxTokens": 16, "maxRequests": 80},
}
CANARY = decode_steps({"partition": 1, "analysis": ANALYSIS})


def decode_image(value: str) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["modelService"]["decode"]["image"] = value

    return change


@dataclass
class Target:
    sim: SimCluster
    image: str
    # Per staged case: the analysis the workflow ran, and when its step ended (Unix time).
    analysed: dict[str, tuple[AnalysisResult | None, RolloutResult]] = field(
        default_factory=dict
    )

    def spec(self, *changes: Change) -> RolloutSpec:
        return sim_spec(NAME, self.sim, small_decode_pods, *changes)


sim = sim_cluster_fixture("sim-analysis", scope="module", time_scale=TIME_SCALE)


@pytest.fixture(scope="module")
def prometheus(sim: SimCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    PrometheusServer | None
]:
    """A Prometheus scraping the pods from the start, when the binary is there (the comparison
    test reports its absence)."""
    try:
        prometheus_binary()
    except (pytest.skip.Exception, pytest.fail.Exception):
        yield None
        return
    workdir = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(workdir, sim.client(), NAMESPACE) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def target(
    client: Client, real_worker: str, sim: SimCluster, prometheus: PrometheusServer | None
) -> Target:
    installed = Target(sim, f"{VLLM}:v0.2.0-rc.1")
    spec = installed.spec(CANARY, decode_image(installed.image))
    result = await asyncio.wait_for(
        rollout_result(await start_rollout(client, spec, task_queue=real_worker)),
        ROLLOUT_TIMEOUT,
    )
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    return installed


async def upgrade(
    client: Client, real_worker: str, target: Target, case: str, fault: tuple[str, ...],
    gate: Change = CANARY,
) -> RolloutResult:
    new = f"{VLLM}:v0.3.{uuid.uuid4().hex[:6]}"
    if fault:
        target.sim.fault("degrade", "--image", new, *fault)
    try:
        result = await asyncio.wait_for(
            rollout_result(
                await start_rollout(
                    client, target.spec(gate, decode_image(new)), task_queue=real_worker
                )
            ),
            ROLLOUT_TIMEOUT,
        )
    finally:
        if fault:
            target.sim.fault("clear")
    evidence = result.failure.evidence.get("analysis") if result.failure else None
    target.analysed[case] = (
        AnalysisResult.model_validate(evidence) if evidence else None, result
    )
    if result.outcome == Outcome.SUCCEEDED:
        target.image = new
    return result


def check(result: AnalysisResult, metric: str) -> Any:
    return next(c for c in result.checks if c.metric == metric)


@pytest.mark.parametrize(
    ("case", "fault", "metric"),
    [
        ("ttft", ("--ttft-factor", "1.6"), "ttft"),
        ("errors", ("--error-rate", "0.05"), "error_rate"),
        ("no-pd", ("--no-pd",), "prefill_decode"),
    ],
)
async def test_staged_regression_fails_analysis_at_the_first_step_and_rolls_back(
    client: Client, real_worker: str, target: Target, case: str, fault: tuple[str, ...],
    metric: str,
) -> None:
    before = target.image
    result = await upgrade(client, real_worker, target, case, fault)

    assert result.outcome == Outcome.ROLLED_BACK, result.failure
    failure = result.failure
    assert failure is not None and failure.reason == FailureReason.ANALYSIS_FAILED, failure
    assert failure.step == "analysis/decode/partition-1"
    # Load and /v1/models passed: the canary step's verification went through.
    verified = next(s for s in result.steps if s.name == "verify/decode/partition-1")
    assert verified.status == "passed"
    analysis = AnalysisResult.model_validate(failure.evidence["analysis"])
    failed = [c.metric for c in analysis.checks if c.passed is False]
    assert failed == [metric], analysis.summary
    found = check(analysis, metric)
    assert found.canary is not None and found.limit is not None
    if metric != "prefill_decode":
        assert found.stable is not None
    assert found.detail in failure.message
    assert analysis.canary.requests >= 15
    # The synthetic load stayed in its bounds: count (maxRequests) and time (the window).
    assert 30 <= analysis.load_requests <= ANALYSIS["load"]["maxRequests"]
    assert analysis.window_seconds < 8 + 5
    assert result.rollback is not None and result.rollback.verified
    assert target.image == before
    print(f"\n{case}: {failure.message}")


async def test_the_prometheus_source_in_the_spec_fails_the_same_ttft_regression(
    client: Client, real_worker: str, target: Target, prometheus: PrometheusServer | None
) -> None:
    """The activity's own Prometheus source (`analysis.prometheus`), in a rollout."""
    if prometheus is None:
        prometheus_binary()  # skips with a message, or fails under CI=true
        return
    source = {"url": prometheus.url, "scrapeInterval": "1s"}
    gate = decode_steps({"partition": 1, "analysis": {**ANALYSIS, "prometheus": source}})
    before = target.image
    result = await upgrade(client, real_worker, target, "ttft-prometheus", ("--ttft-factor", "1.6"),
                           gate)
    assert result.outcome == Outcome.ROLLED_BACK, result.failure
    failure = result.failure
    assert failure is not None and failure.reason == FailureReason.ANALYSIS_FAILED, failure
    analysis = AnalysisResult.model_validate(failure.evidence["analysis"])
    assert analysis.source == "prometheus"
    assert [c.metric for c in analysis.checks if c.passed is False] == ["ttft"], analysis.summary
    assert target.image == before
    print(f"\nttft-prometheus: {failure.message}")


async def test_the_same_upgrade_without_a_regression_passes_and_completes(
    client: Client, real_worker: str, target: Target
) -> None:
    result = await upgrade(client, real_worker, target, "none", ())
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    step = next(s for s in result.steps if s.name == "analysis/decode/partition-1")
    assert step.status == "passed" and step.detail.startswith("pass: ttft p90 ")
    print(f"\nnone: {step.detail}")


def prometheus_verdict(
    server: PrometheusServer, direct: AnalysisResult | None, result: RolloutResult
) -> AnalysisResult:
    """The same window judged from Prometheus: the pods the direct source read (the canary
    step's groups), over the window that ended when the analysis step did."""
    step = next(s for s in result.steps if s.name == "analysis/decode/partition-1")
    assert step.finished_at is not None
    ran = (step.finished_at - step.started_at).total_seconds()
    analysis = Analysis.model_validate(ANALYSIS)
    lws = "ms-wide-ep-llm-d-modelservice-decode"
    canary = direct.canary.pods if direct else [f"{lws}-1", f"{lws}-1-1"]
    stable = direct.stable.pods if direct and direct.stable else [f"{lws}-0", f"{lws}-0-1"]
    # One scrape interval: the server's, not the spec default.
    source = PrometheusSource(url=server.url, scrape_interval="1s")
    windows = PrometheusQuery(source, NAMESPACE).window_signals(
        canary + stable, ran, ended_at=step.finished_at.timestamp()
    )

    def group(names: list[str]) -> Group:
        return Group(names, combine(windows[n] for n in names if n in windows))

    return judge(
        analysis, "decode", group(canary), group(stable),
        window_seconds=ran, source="prometheus",
    )


def test_prometheus_source_gives_the_same_verdicts_as_the_direct_source(
    target: Target, prometheus: PrometheusServer | None
) -> None:
    if prometheus is None:
        prometheus_binary()  # skips with a message, or fails under CI=true
        return
    direct_cases = {"ttft", "errors", "no-pd", "none"}
    assert direct_cases <= set(target.analysed), target.analysed
    for case in sorted(direct_cases):
        direct, result = target.analysed[case]
        judged = prometheus_verdict(prometheus, direct, result)
        expected = "pass" if direct is None else direct.verdict
        assert judged.verdict == expected, (case, judged.summary)
        if direct is not None:
            assert [c.metric for c in judged.checks if c.passed is False] == [
                c.metric for c in direct.checks if c.passed is False
            ], (case, judged.summary)
        print(f"\n{case} (prometheus): {judged.verdict}: {judged.summary}")

