"""End to end: upgrades of a running stack through RolloutWorkflow with the real activities
against clustersim: a decode canary behind an approval gate, automatic rollback for each way a
new version can fail, and abort during model load.

The module installs one target (decode: two groups of two 2-GPU pods, so a partition-1 canary
fits on h200-2node beside the prefill pod) and upgrades it test after test; every failed upgrade
must leave the previous version serving, which the next test relies on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from rollouts.observing import current_details, rollout_result
from rollouts.starting import TargetBusy, start_rollout
from spec.reasons import FailureReason
from spec.rollout import RolloutSpec
from spec.workflow_io import (
    AbortRequest,
    ApproveRequest,
    Outcome,
    PauseRequest,
    Phase,
    ResumeRequest,
    RunState,
)
from tests.simcluster import SimCluster, sim_cluster_fixture
from tests.workflows.e2e import (
    TIME_SCALE,
    VENV_BIN,
    sim_spec,
    small_decode_pods,
)
from tests.workflows.scenarios import query, until
from tests.workflows.specs import Change, decode_steps, image
from workflows.rollout import RolloutWorkflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLLOUT_TIMEOUT = 240.0
NAME = "upgrades"
CANARY = decode_steps({"partition": 1, "approval": True})
VLLM = "ghcr.io/llm-d/llm-d-dev"


@dataclass
class Target:
    """The module's target and the image it serves now."""

    sim: SimCluster
    image: str

    def spec(self, *changes: Change) -> RolloutSpec:
        return sim_spec(NAME, self.sim, small_decode_pods, *changes)


sim = sim_cluster_fixture("sim-upgrade", scope="module", time_scale=TIME_SCALE)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def target(client: Client, real_worker: str, sim: SimCluster) -> Target:
    installed = Target(sim, f"{VLLM}:v0.2.0-rc.1")
    result = await asyncio.wait_for(
        rollout_result(await start_rollout(client, installed.spec(), task_queue=real_worker)),
        ROLLOUT_TIMEOUT,
    )
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    return installed


def vllm_images(sim: SimCluster, namespace: str) -> dict[str, str]:
    """Pod name -> the image of its vLLM container, for the model-service pods."""
    done = subprocess.run(
        [str(VENV_BIN / "kubectl"), "get", "pods", "-n", namespace, "-o", "json",
         "-l", "llm-d.ai/inferenceServing=true", "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    images = {}
    for pod in json.loads(done.stdout)["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        containers: list[dict[str, Any]] = pod["spec"]["containers"]
        vllm = next(c for c in containers if c["name"].startswith("vllm"))
        images[pod["metadata"]["name"]] = vllm["image"]
    return images


async def test_image_upgrade_canaries_decode_behind_an_approval_gate(
    client: Client, real_worker: str, target: Target
) -> None:
    new = f"{VLLM}:v0.2.1"
    handle = await start_rollout(
        client, target.spec(CANARY, image(new)), task_queue=real_worker
    )
    waiting = await until(
        query(handle),
        lambda p: p.state in (RunState.WAITING_FOR_APPROVAL, RunState.FINISHED),
        ROLLOUT_TIMEOUT,
    )
    assert waiting.state == RunState.WAITING_FOR_APPROVAL, waiting.diagnosis
    assert waiting.gate is not None and waiting.gate.name == "decode/step-1"
    assert "waiting for approval" in await current_details(handle)
    images = vllm_images(target.sim, "llm-d-wide-ep")
    decode_group_1 = [n for n in images if "decode-1" in n]
    assert decode_group_1 and all(images[n] == new for n in decode_group_1)
    assert all(img == target.image for n, img in images.items() if "decode-0" in n)
    assert all(img == target.image for n, img in images.items() if "prefill" in n)

    await handle.execute_update(RolloutWorkflow.approve, ApproveRequest(by="e2e"))
    result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)

    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert set(vllm_images(target.sim, "llm-d-wide-ep").values()) == {new}
    assert next(s for s in result.steps if s.name == "verify").status == "passed"
    target.image = new


@pytest.mark.parametrize(
    ("fault", "reason", "changes"),
    [
        (("image-pull", "--count", "1000"), FailureReason.IMAGE_PULL, ()),
        (("crash", "--count", "1000", "--after", "5"), FailureReason.CRASH_LOOP, ()),
        # Loading progresses, only too slowly for the budget (a hang is diagnosed as stalled).
        # The two slowest (~25 s each) run with the long scenarios (`make test-long`).
        pytest.param(
            ("slow-load", "--count", "1000", "--factor", "10"), FailureReason.MODEL_LOAD_TIMEOUT,
            ("budget",), marks=pytest.mark.long,
        ),
        pytest.param(
            ("gateway-503", "--count", "10"), FailureReason.VERIFICATION_FAILED, (),
            marks=pytest.mark.long,
        ),
    ],
    ids=["image-pull", "crash-loop", "model-load-budget", "gateway-503"],
)
async def test_failed_upgrade_rolls_back_and_the_old_version_serves_again(
    client: Client, real_worker: str, target: Target,
    fault: tuple[str, ...], reason: FailureReason, changes: tuple[str, ...],
) -> None:
    bad = f"{VLLM}:v9.{uuid.uuid4().hex[:6]}"
    kind, *args = fault
    target.sim.fault(kind, *([] if kind == "gateway-503" else ["--image", bad]), *args)
    extra: list[Change] = []
    if "budget" in changes:
        # A short budget and no startup probe: the hang must end in the budget, not a kill.
        extra.append(_short_model_load_budget)
    try:
        result = await asyncio.wait_for(
            rollout_result(
                await start_rollout(client, target.spec(image(bad), *extra), task_queue=real_worker)
            ),
            ROLLOUT_TIMEOUT,
        )
    finally:
        target.sim.fault("clear")

    assert result.outcome == Outcome.ROLLED_BACK, result.failure
    assert result.failure is not None and result.failure.reason == reason, result.failure
    assert result.failure.message and result.failure.evidence
    assert result.rollback is not None and result.rollback.verified
    assert next(c.undoes for c in result.rollback.compensations) == "model-service"
    assert set(vllm_images(target.sim, "llm-d-wide-ep").values()) == {target.image}


def _short_model_load_budget(document: dict[str, Any]) -> None:
    document["budgets"]["modelLoad"] = "20s"
    document["modelService"]["startupProbe"] = False


async def test_abort_during_model_load_rolls_back(
    client: Client, real_worker: str, target: Target
) -> None:
    slow = f"{VLLM}:v0.3.0-slow"
    target.sim.fault("slow-load", "--image", slow, "--factor", "20", "--count", "1000")
    try:
        handle = await start_rollout(client, target.spec(image(slow)), task_queue=real_worker)
        loading = await until(
            query(handle),
            lambda p: p.phase == Phase.MODEL_LOAD or p.state == RunState.FINISHED,
            ROLLOUT_TIMEOUT,
        )
        assert loading.phase == Phase.MODEL_LOAD, loading.diagnosis
        await handle.execute_update(
            RolloutWorkflow.abort, AbortRequest(by="e2e", reason="too slow")
        )
        result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)
    finally:
        target.sim.fault("clear")

    assert result.outcome == Outcome.ROLLED_BACK, result.failure
    assert result.failure is not None and result.failure.reason == FailureReason.ABORTED
    assert result.rollback is not None and result.rollback.verified
    assert set(vllm_images(target.sim, "llm-d-wide-ep").values()) == {target.image}


# ~13 s (an install, then an upgrade paused between roles): with the long scenarios; the same
# hold between steps runs in `make test` (tests/workflows/test_rollout.py, fake activities).
@pytest.mark.long
async def test_pause_holds_before_the_next_role_and_resume_finishes_the_upgrade(
    client: Client, real_worker: str, target: Target
) -> None:
    new = f"{VLLM}:v0.2.2"
    spec = target.spec(image(new))
    handle = await start_rollout(client, spec, task_queue=real_worker)
    decode_loading = await until(
        query(handle),
        lambda p: p.step.startswith("model-load/decode") or p.state == RunState.FINISHED,
        ROLLOUT_TIMEOUT,
    )
    assert decode_loading.step.startswith("model-load/decode"), decode_loading.diagnosis
    await handle.execute_update(RolloutWorkflow.pause, PauseRequest(by="e2e"))

    # While it runs (paused), the target refuses a second rollout and names this one.
    with pytest.raises(TargetBusy) as busy:
        await start_rollout(client, spec, task_queue=real_worker)
    assert busy.value.workflow_id == handle.id == "rollout/" + spec.target_id

    paused = await until(
        query(handle),
        lambda p: p.state in (RunState.PAUSED, RunState.FINISHED),
        ROLLOUT_TIMEOUT,
    )
    assert paused.state == RunState.PAUSED, paused.diagnosis
    await asyncio.sleep(1.0)
    images = vllm_images(target.sim, "llm-d-wide-ep")
    assert all(img == target.image for n, img in images.items() if "prefill" in n), images
    assert (await query(handle)()).state == RunState.PAUSED

    await handle.execute_update(RolloutWorkflow.resume, ResumeRequest(by="e2e"))
    result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)

    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert set(vllm_images(target.sim, "llm-d-wide-ep").values()) == {new}
    target.image = new
