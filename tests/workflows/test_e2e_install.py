"""End to end: the demo stack installed by RolloutWorkflow with the real activities against
clustersim (real helm, real Kubernetes API over HTTPS, fake vLLM behind a simulated gateway).

One clustersim (h200-2node, 16 GPUs) for the module; the worker runs in-process on the session's
Temporal dev server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from temporalio.client import Client

from cli.exit_codes import ExitCode, for_result
from rollouts.observing import rollout_result
from rollouts.starting import start_rollout, start_teardown
from spec.reasons import FailureReason
from spec.workflow_io import ROLLOUT_PHASES, Outcome, Phase, StepStatus, TeardownInput
from tests.simcluster import SimCluster, sim_cluster_fixture
from tests.workflows.e2e import (
    HF_TOKEN,
    TIME_SCALE,
    VENV_BIN,
    history_bytes,
    sim_spec,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLLOUT_TIMEOUT = 180.0


sim = sim_cluster_fixture("sim-install", scope="module", time_scale=TIME_SCALE)


def helm_revisions(sim: SimCluster, release: str, namespace: str) -> list[int]:
    done = subprocess.run(
        [str(VENV_BIN / "helm"), "history", release, "-n", namespace, "-o", "json",
         "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return [int(entry["revision"]) for entry in json.loads(done.stdout)]


async def test_demo_installs_serves_and_an_unchanged_rerun_changes_nothing(
    client: Client, real_worker: str, sim: SimCluster
) -> None:
    spec = sim_spec("wide-ep", sim)
    handle = await start_rollout(client, spec, task_queue=real_worker)
    result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)

    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert [p.phase for p in result.phases] == list(ROLLOUT_PHASES)
    assert all(p.duration_seconds > 0 for p in result.phases)
    verify = next(s for s in result.steps if s.name == "verify")
    assert verify.status == StepStatus.PASSED
    assert "completion ok" in verify.detail and "disaggregation ok" in verify.detail
    history = history_bytes(await handle.fetch_history())
    assert HF_TOKEN.encode() not in history
    assert b"llm-d-hf-token" in history  # the Secret's name travels, its value never does

    again = await asyncio.wait_for(
        rollout_result(await start_rollout(client, spec, task_queue=real_worker)),
        ROLLOUT_TIMEOUT,
    )
    assert again.outcome == Outcome.SUCCEEDED, again.failure
    statuses = {p.phase: p.status for p in again.phases}
    for phase in (Phase.DEPENDENCIES, Phase.GATEWAY_PROVIDER, Phase.NAMESPACE, Phase.INFRA,
                  Phase.MODEL_SERVICE, Phase.RECORD):
        assert statuses[phase] == StepStatus.UNCHANGED, (phase, statuses[phase])
    # One Helm revision per release change: the re-run created none.
    assert helm_revisions(sim, "infra-wide-ep", spec.target.namespace) == [1]
    assert helm_revisions(sim, "istiod", "istio-system") == [1]
    assert helm_revisions(sim, "lws", "lws-system") == [1]


async def test_teardown_removes_the_stack_and_keeps_the_shared_pieces(
    client: Client, real_worker: str, sim: SimCluster
) -> None:
    spec = sim_spec("wide-ep", sim)
    handle = await start_teardown(client, TeardownInput(spec=spec), task_queue=real_worker)
    result = await asyncio.wait_for(handle.result(), ROLLOUT_TIMEOUT)

    assert result.outcome == Outcome.REMOVED
    assert [s.name for s in result.steps] == [
        "model-service", "helm/infra-wide-ep", "namespace", "shared-pieces",
    ]
    assert helm_revisions(sim, "istiod", "istio-system") == [1]
    assert HF_TOKEN.encode() not in history_bytes(await handle.fetch_history())


def unrenderable_infra_values(document: dict[str, Any]) -> None:
    """A target of its own, with a connection limit the infra chart's schema refuses."""
    document["target"]["namespace"] = "bad-chart-values"
    rule = document["infra"]["values"]["gateway"]["destinationRule"]
    rule["trafficPolicy"] = {"connectionPool": {"tcp": {"maxConnections": "eight"}}}


async def test_a_spec_whose_chart_values_do_not_render_is_refused_in_preflight(
    client: Client, real_worker: str, sim: SimCluster
) -> None:
    # Started straight through Temporal, as a script would: no CLI validate in front of it.
    spec = sim_spec("bad-values", sim, unrenderable_infra_values)
    handle = await start_rollout(client, spec, task_queue=real_worker)
    result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)

    assert result.failure is not None, result.outcome
    assert (result.failure.reason, result.failure.phase) == (
        FailureReason.INVALID_SPEC, Phase.PREFLIGHT
    )
    assert result.failure.message.endswith("tcp.maxConnections: got string, want integer")
    assert for_result(result) == ExitCode.REFUSED
    assert result.rollback is None or result.rollback.compensations == []
    namespace = subprocess.run(
        [str(VENV_BIN / "kubectl"), "get", "namespace", "bad-chart-values",
         "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert namespace.returncode != 0 and "NotFound" in namespace.stderr
