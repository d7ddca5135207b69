"""End to end: a spec whose infra values name a GatewayClass the cluster does not have fails in
the infra phase as InvalidSpec naming the class and the field, instead of waiting out the
infra budget and ending GatewayNotProgrammed (issue 14); a class that exists but that no
controller accepts waits out the budget and ends GatewayNotProgrammed with what the wait last
saw, never a bare RolloutTimeout. Real worker (in-process, so the test can shorten the grace
period), real helm, the Temporal dev server and a clustersim whose gateway controller, like a
real one, leaves a Gateway of an unknown class unprogrammed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import Client

from activities import waits
from cli.exit_codes import ExitCode, for_result
from k8s import UnknownKind
from rollouts.observing import rollout_result
from rollouts.starting import start_rollout
from spec.reasons import FailureReason
from spec.workflow_io import Outcome, Phase
from tests.simcluster import SimCluster, sim_cluster_fixture
from tests.workflows.e2e import TIME_SCALE, sim_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLLOUT_TIMEOUT = 300.0
MISSING_CLASS = "istio-typo"
NAMESPACE = "missing-gateway-class"
ORPHAN_CLASS = "no-controller"
ORPHAN_NAMESPACE = "orphan-gateway-class"
INFRA_BUDGET = "20s"

sim = sim_cluster_fixture("sim-gateway-class", scope="module", time_scale=TIME_SCALE)


def unknown_gateway_class(document: dict[str, Any]) -> None:
    """A target of its own whose infra Gateway asks for a class no provider registers."""
    document["target"]["namespace"] = NAMESPACE
    document["infra"]["values"]["gateway"]["gatewayClassName"] = MISSING_CLASS


async def test_a_gateway_class_that_does_not_exist_fails_the_infra_phase_as_invalid_spec(
    client: Client, real_worker: str, sim: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A provider's class comes seconds after its install; here nothing will ever register it.
    monkeypatch.setattr(waits, "GATEWAY_CLASS_GRACE_SECONDS", 2.0)
    spec = sim_spec("gateway-class-typo", sim, unknown_gateway_class)

    result = await asyncio.wait_for(
        rollout_result(await start_rollout(client, spec, task_queue=real_worker)),
        ROLLOUT_TIMEOUT,
    )

    failure = result.failure
    assert failure is not None, result.outcome
    # The infra budget's end would say GatewayNotProgrammed: this ended before it.
    assert (failure.reason, failure.phase, failure.step) == (
        FailureReason.INVALID_SPEC, Phase.INFRA, "gateway-programmed"
    )
    assert failure.message.startswith(
        f"infra.values.gateway.gatewayClassName: GatewayClass '{MISSING_CLASS}' does not exist "
        "in the cluster"
    )
    assert "GatewayClasses there: istio" in failure.message
    # The demo keeps a failed first install for inspection: failed, nothing rolled back.
    assert result.outcome == Outcome.KEPT_FOR_INSPECTION
    assert for_result(result) == ExitCode.FAILED
    assert Phase.MODEL_SERVICE not in {p.phase for p in result.phases}

    kube = sim.client()
    try:
        gateways, _ = kube.list_objects("gateway.networking.k8s.io/v1", "Gateway", NAMESPACE)
        later = {
            kind: kube.list_objects(api_version, kind, NAMESPACE)[0]
            for api_version, kind in (
                ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
                ("gateway.networking.k8s.io/v1", "HTTPRoute"),
                ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"),
                ("apps/v1", "Deployment"),
            )
        }
    finally:
        kube.close()
    # The infra chart's Gateway is there, unprogrammed; nothing of a later phase is.
    assert [g["spec"]["gatewayClassName"] for g in gateways] == [MISSING_CLASS]
    assert later == {kind: [] for kind in later}


async def applied_once_served(sim: SimCluster, obj: dict[str, Any]) -> None:
    """Apply `obj` as soon as the API server serves its kind (bounded by ROLLOUT_TIMEOUT)."""
    deadline = asyncio.get_running_loop().time() + ROLLOUT_TIMEOUT
    kube = sim.client()
    try:
        while True:
            try:
                kube.apply(obj, force=True)
                return
            except UnknownKind:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        kube.close()


def orphan_gateway_class(document: dict[str, Any]) -> None:
    """A target of its own whose Gateway asks for a class no running controller accepts, with a
    short infra budget."""
    document["target"]["namespace"] = ORPHAN_NAMESPACE
    document["infra"]["values"]["gateway"]["gatewayClassName"] = ORPHAN_CLASS
    document["budgets"]["phaseTimeouts"]["infra"] = INFRA_BUDGET


# Waits out a 20 s infra budget: make test-long (make test stays under 15 minutes).
@pytest.mark.long
async def test_a_gateway_never_programmed_ends_with_the_waits_own_reason_not_a_timeout(
    client: Client, real_worker: str, sim: SimCluster
) -> None:
    spec = sim_spec("gateway-class-orphan", sim, orphan_gateway_class)
    handle = await start_rollout(client, spec, task_queue=real_worker)
    # The class, once the rollout's dependencies phase has installed the Gateway API CRDs (long
    # before the infra budget ends; the missing-class grace is longer than that budget).
    await applied_once_served(sim, {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": ORPHAN_CLASS},
        "spec": {"controllerName": "example.com/not-installed"},
    })

    result = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)

    failure = result.failure
    assert failure is not None, result.outcome
    # The wait's own end, before Temporal's backstop (workflows/calls.py WAIT_BACKSTOP): it says
    # which Gateway, the budget, and what it last saw, down to the class nobody accepted.
    assert (failure.reason, failure.phase, failure.step) == (
        FailureReason.GATEWAY_NOT_PROGRAMMED, Phase.INFRA, "gateway-programmed"
    ), failure
    assert "not ready within 20s; last seen:" in failure.message, failure.message
    assert f"GatewayClass {ORPHAN_CLASS} (controller example.com/not-installed)" in (
        failure.message
    ), failure.message
