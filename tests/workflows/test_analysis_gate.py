"""The analysis gate in the workflow (stand-in activities): where it runs in the plan, and what
each verdict leads to: pass goes on, fail rolls back with AnalysisFailed, inconclusive retries,
fails or waits for approval as the spec says."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client

from rollouts.observing import rollout_result
from rollouts.starting import start_rollout
from spec.reasons import FailureReason
from spec.workflow_io import ApproveRequest, Outcome, Phase, RunState, StepStatus
from tests.workflows.fakes import FakeCluster
from tests.workflows.scenarios import WAIT, installed, query, run_rollout, until
from tests.workflows.specs import NEW_IMAGE, Change, decode_replicas, decode_steps, demo_spec, image
from workflows.rollout import RolloutWorkflow


def canary_with_analysis(**analysis: Any) -> Change:
    return decode_steps({"partition": 1, "analysis": {"window": "5s", **analysis}})


def analysed(fake: FakeCluster) -> list[str]:
    return [call for call in fake.calls if call.startswith("analyze_canary")]


async def upgrade(
    client: Client, fake: FakeCluster, queue: str, name: str, verdicts: list[str], **analysis: Any
) -> Any:
    gate = canary_with_analysis(**analysis)
    await installed(client, fake, queue, name, decode_replicas(2), gate)
    fake.analysis_verdicts = verdicts
    return demo_spec(name, decode_replicas(2), gate, image(NEW_IMAGE))


async def test_analysis_runs_after_the_canary_step_and_a_pass_goes_on(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = await upgrade(temporal_client, fake_cluster, fake_worker, "analysis-pass", ["pass"])
    result = await run_rollout(temporal_client, spec, fake_worker)
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert analysed(fake_cluster) == ["analyze_canary:decode/partition-1"]
    names = [s.name for s in result.steps]
    # After the canary's verification, before the next partition.
    assert names.index("verify/decode/partition-1") < names.index(
        "analysis/decode/partition-1"
    ) < names.index("decode/partition-0")
    step = next(s for s in result.steps if s.name == "analysis/decode/partition-1")
    assert step.status == StepStatus.PASSED and "ttft p90" in (step.detail or "")


async def test_failed_analysis_rolls_back_with_its_evidence(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = await upgrade(temporal_client, fake_cluster, fake_worker, "analysis-fail", ["fail"])
    result = await run_rollout(temporal_client, spec, fake_worker)
    assert result.outcome == Outcome.ROLLED_BACK
    failure = result.failure
    assert failure is not None and failure.reason == FailureReason.ANALYSIS_FAILED
    assert failure.step == "analysis/decode/partition-1"
    assert "ttft p90 staged fail" in failure.message
    assert failure.evidence["analysis"]["checks"][0]["canary"] == 0.1
    assert result.rollback is not None and result.rollback.verified
    assert fake_cluster.image("decode") != NEW_IMAGE


async def test_inconclusive_window_is_retried_then_fails_when_retries_run_out(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = await upgrade(
        temporal_client, fake_cluster, fake_worker, "analysis-retry",
        ["inconclusive", "pass"], maxRetries=1,
    )
    result = await run_rollout(temporal_client, spec, fake_worker)
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert len(analysed(fake_cluster)) == 2
    assert "analysis/decode/partition-1/retry-1" in [s.name for s in result.steps]

    fake_cluster.calls.clear()
    fake_cluster.analysis_verdicts = ["inconclusive", "inconclusive"]
    again = demo_spec(
        "analysis-retry", decode_replicas(2), canary_with_analysis(maxRetries=1),
        image("ghcr.io/llm-d/llm-d-dev:v0.3.0"),
    )
    result = await run_rollout(temporal_client, again, fake_worker)
    assert result.outcome == Outcome.ROLLED_BACK
    assert result.failure is not None
    assert result.failure.reason == FailureReason.ANALYSIS_INCONCLUSIVE
    assert "inconclusive after 2 windows" in result.failure.message


async def test_inconclusive_window_can_fail_at_once_or_wait_for_approval(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    spec = await upgrade(
        temporal_client, fake_cluster, fake_worker, "analysis-policy", ["inconclusive"],
        onInconclusive="fail",
    )
    result = await run_rollout(temporal_client, spec, fake_worker)
    assert result.failure is not None
    assert result.failure.reason == FailureReason.ANALYSIS_INCONCLUSIVE
    assert len(analysed(fake_cluster)) == 1

    fake_cluster.analysis_verdicts = ["inconclusive"]
    approval = demo_spec(
        "analysis-policy", decode_replicas(2), canary_with_analysis(onInconclusive="approval"),
        image(NEW_IMAGE),
    )
    handle = await start_rollout(temporal_client, approval, task_queue=fake_worker)
    waiting = await until(query(handle), lambda p: p.state == RunState.WAITING_FOR_APPROVAL)
    assert waiting.gate is not None and waiting.gate.name == "analysis/decode/partition-1"
    await handle.execute_update(RolloutWorkflow.approve, ApproveRequest(by="sre"))
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    gate = next(s for s in result.steps if s.phase == Phase.GATE)
    assert "approved by sre" in (gate.detail or "")


async def test_first_install_analyses_a_role_once_every_role_serves(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    def thresholds(document: dict[str, Any]) -> None:
        strategy = document.setdefault("strategy", {})
        strategy["decode"] = {"analysis": {"window": "5s", "thresholds": {"ttftSeconds": 0.5}}}

    fake_cluster.analysis_verdicts = ["fail"]
    result = await run_rollout(
        temporal_client, demo_spec("analysis-install", thresholds), fake_worker
    )
    assert analysed(fake_cluster) == ["analyze_canary:decode"]
    names = [s.name for s in result.steps]
    assert names.index("model-load/decode") < names.index("analysis/decode")
    assert names.index("model-load/prefill") < names.index("analysis/decode")
    assert result.failure is not None
    assert result.failure.reason == FailureReason.ANALYSIS_FAILED
    # The failure policy applies as to any other failure (the demo keeps a failed install).
    assert result.outcome == Outcome.KEPT_FOR_INSPECTION
