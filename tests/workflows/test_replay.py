"""Determinism: every stored history (tests/histories/) replays on today's workflow code.

A history stands for a run in flight when a new worker version is deployed: if it no longer
replays, that change would wedge the running rollouts. Such a change goes behind
`workflow.patched`; the last two tests prove both halves of that rule on a stored history.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from spec.workflow_io import RolloutInput, RolloutResult
from tests.workflows.e2e import HF_TOKEN, history_bytes
from tests.workflows.record_real_histories import SCENARIOS as REAL_SCENARIOS
from workflows.registry import WORKFLOWS, workflow_runner
from workflows.rollout import RolloutWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
STORED = sorted(HISTORIES.glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def replayer(*workflows: type) -> Replayer:
    return Replayer(
        workflows=list(workflows) or WORKFLOWS, data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


def test_there_is_a_stored_history_for_every_workflow() -> None:
    types = {load(path).events[0].workflow_execution_started_event_attributes.workflow_type.name
             for path in STORED}
    assert types == {
        "RolloutWorkflow", "UpgradeWorkflow", "TeardownWorkflow", "FleetWorkflow",
        "FleetUpgradeWorkflow", "ClusterWorkflow",
    }


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
async def test_stored_history_replays_on_the_current_workflows(path: Path) -> None:
    await replayer().replay_workflow(load(path))


def test_histories_of_real_activity_runs_are_stored_and_hold_no_secret() -> None:
    """Runs against clustersim (record_real_histories.py) carry the real activities' answers;
    their worker had the HF token, which must appear nowhere in what was recorded."""
    real = {path.stem: path for path in STORED if path.stem.startswith("real-")}
    # real-cluster-workflow-in-order: recorded before a dependencies ask ran its pieces at once
    # (357cfa3); -two-asks: before the gateway provider was asked for with the dependencies.
    # Kept, as runs of those builds may still be replayed.
    assert set(real) == {
        *REAL_SCENARIOS, "real-cluster-workflow", "real-cluster-workflow-in-order",
        "real-cluster-workflow-two-asks", "real-rollout-asked-together",
    }
    for path in real.values():
        assert HF_TOKEN.encode() not in history_bytes(load(path)), path.name


# Unsandboxed: the sandbox would re-import this test module, which reads files at import.
@workflow.defn(name="RolloutWorkflow", sandboxed=False)
class SecretBeforeNamespace(RolloutWorkflow):
    """A careless change: the HF token Secret is ensured before the namespace."""

    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        return await super().run(request)

    async def _namespace(self) -> None:
        await _swapped(self)


@workflow.defn(name="RolloutWorkflow", sandboxed=False)
class PatchedSecretBeforeNamespace(RolloutWorkflow):
    """The same change behind `workflow.patched`: old runs keep the old order."""

    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        return await super().run(request)

    async def _namespace(self) -> None:
        if workflow.patched("secret-before-namespace"):
            await _swapped(self)
        else:
            await RolloutWorkflow._namespace(self)


async def _swapped(self: RolloutWorkflow) -> None:
    """`_namespace` with its two steps in the other order."""
    from spec.activity_io import EnsureNamespaceInput, HfTokenSecretInput
    from spec.workflow_io import Phase, StepStatus
    from workflows import calls

    spec = self._spec
    timeout = spec.budgets.phase_timeouts.namespace
    await self._steps.call(
        Phase.NAMESPACE, "hf-token-secret", calls.ENSURE_HF_TOKEN_SECRET,
        HfTokenSecretInput(target=spec.target, hf_token=spec.model_service.hf_token),
        budget=timeout, summary="secret first", status=lambda r: StepStatus.CHANGED,
    )
    await self._steps.call(
        Phase.NAMESPACE, "namespace", calls.ENSURE_NAMESPACE,
        EnsureNamespaceInput(target=spec.target),
        budget=timeout, summary="namespace second", status=lambda r: StepStatus.CHANGED,
    )


async def test_a_reordering_change_fails_to_replay_a_stored_rollout() -> None:
    history = load(HISTORIES / "rollout-fresh-install.json")
    with pytest.raises(NondeterminismError):
        await replayer(SecretBeforeNamespace).replay_workflow(history)


async def test_the_same_change_behind_workflow_patched_replays_the_stored_rollout() -> None:
    history = load(HISTORIES / "rollout-fresh-install.json")
    await replayer(PatchedSecretBeforeNamespace).replay_workflow(history)
