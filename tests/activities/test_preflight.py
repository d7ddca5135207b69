"""Preflight on the simulated two-node H200 cluster: the as-shipped values (24 GPUs) are refused
before any change with the plan per node; the 16-GPU shape is accepted; an update that needs
surge on a full cluster rolls without surge when maxUnavailable allows it, else is refused; chart
values the chart refuses are refused (InvalidSpec) before the cluster is even read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError

from activities import kube, preflight, waits
from helmcli import HELM_ENV
from spec.activity_io import (
    ApplyModelServiceInput,
    DeleteObjectsInput,
    FailureEvidence,
    HfTokenSecretInput,
    ObjectRef,
    PreflightInput,
    WaitForLwsInput,
)
from spec.rollout import RoleStrategy, RolloutSpec
from tests.activities.conftest import REPO, SimCluster
from tests.activities.specs import demo_spec, environment, example, prepared


@pytest.fixture(autouse=True)
def helm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HELM_ENV, str(REPO / ".venv" / "bin" / "helm"))


def on(cluster: SimCluster, name: str) -> RolloutSpec:
    spec = example(name)
    target = spec.target.model_copy(update={"kubeconfig": str(cluster.kubeconfig)})
    return spec.model_copy(update={"target": target})


async def test_as_shipped_values_are_refused_with_the_plan(cluster: SimCluster) -> None:
    with pytest.raises(ApplicationError) as raised:
        await environment().run(
            preflight.preflight, PreflightInput(spec=on(cluster, "wide-ep-lws-as-shipped.yaml"))
        )
    error = raised.value
    assert error.type == "InsufficientCapacity" and error.non_retryable
    assert "24 GPUs asked, 16 available" in str(error)
    evidence = FailureEvidence.from_details(error.details)
    assert evidence is not None
    plan = evidence.data["plan"]
    assert (plan["gpus_asked"], plan["gpus_available"], plan["fits"]) == (24, 16, False)
    assert {n["name"] for n in plan["nodes"]} == {"h200-node-1", "h200-node-2"}
    assert "UNPLACED" in evidence.data["plan_text"]


async def test_the_16_gpu_shape_passes_preflight(cluster: SimCluster) -> None:
    report = await environment().run(
        preflight.preflight, PreflightInput(spec=on(cluster, "wide-ep-lws.yaml"))
    )
    assert report.capacity.fits and report.capacity.gpus_asked == 16
    assert report.server_version.startswith("v1.")
    assert report.helm_version.startswith("v4")


@pytest_asyncio.fixture
async def full_cluster(
    cluster: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RolloutSpec]:
    """The 16-GPU shape deployed and running: no GPU left for surge pods."""
    monkeypatch.setenv("HF_TOKEN", "hf_surge_test_token")
    spec = await prepared(cluster.kubeconfig, "surge", startup_probe=False)
    env = environment()
    await env.run(
        kube.ensure_hf_token_secret,
        HfTokenSecretInput(target=spec.target, hf_token=spec.model_service.hf_token),
    )
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    for role in ("decode", "prefill"):
        await env.run(
            waits.wait_for_lws_rollout,
            WaitForLwsInput(
                target=spec.target,
                name=spec.model_service.lws_name(role),
                timeout=timedelta(seconds=60),
            ),
        )
    yield spec
    await env.run(
        kube.delete_objects,
        DeleteObjectsInput(
            target=spec.target, rollout=spec.metadata.name, timeout=timedelta(seconds=60)
        ),
    )


def update(spec: RolloutSpec, max_unavailable: int) -> RolloutSpec:
    """A new decode image, rolled with one surge group."""
    strategy = spec.strategy.model_copy(
        update={"decode": RoleStrategy(max_surge=1, max_unavailable=max_unavailable)}
    )
    service = spec.model_service.model_copy(
        update={
            "decode": spec.model_service.decode.model_copy(
                update={"image": "ghcr.io/llm-d/llm-d:v0.2.0"}
            )
        }
    )
    return spec.model_copy(update={"strategy": strategy, "model_service": service})


async def test_surge_on_a_full_cluster_is_dropped_when_max_unavailable_allows(
    full_cluster: RolloutSpec,
) -> None:
    report = await environment().run(
        preflight.preflight, PreflightInput(spec=update(full_cluster, 1), roles=["decode"])
    )
    plan = report.capacity
    assert plan.fits
    assert plan.max_surge == {"decode": 0}
    assert any("rolling without surge" in note for note in plan.notes)


async def test_surge_on_a_full_cluster_is_refused_when_it_is_required(
    full_cluster: RolloutSpec,
) -> None:
    with pytest.raises(ApplicationError) as raised:
        await environment().run(
            preflight.preflight, PreflightInput(spec=update(full_cluster, 0), roles=["decode"])
        )
    assert raised.value.type == "InsufficientCapacity"
    assert "maxUnavailable is 0" in str(raised.value)


def with_max_connections(spec: RolloutSpec, value: object) -> RolloutSpec:
    """The spec with infra values the llm-d-infra-demo chart's schema refuses."""
    values = {
        **spec.infra.values,
        "gateway": {
            **spec.infra.values["gateway"],
            "destinationRule": {
                "enabled": True,
                "host": "epp.example",
                "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": value}}},
            },
        },
    }
    return spec.model_copy(update={"infra": spec.infra.model_copy(update={"values": values})})


async def test_chart_values_the_chart_refuses_are_refused_before_any_change(
    cluster: SimCluster,
) -> None:
    spec = with_max_connections(demo_spec(cluster.kubeconfig, "bad-chart-values"), "eight")

    with pytest.raises(ApplicationError) as raised:
        await environment().run(preflight.preflight, PreflightInput(spec=spec))

    error = raised.value
    assert error.type == "InvalidSpec" and error.non_retryable
    line = (
        "infra.values.gateway.destinationRule.trafficPolicy.connectionPool.tcp.maxConnections: "
        "got string, want integer"
    )
    assert error.message == f"the chart values do not render: {line}"
    evidence = FailureEvidence.from_details(error.details)
    assert evidence is not None and evidence.data["problems"] == [line]
    namespace = ObjectRef(api_version="v1", kind="Namespace", name="bad-chart-values")
    assert cluster.client().get(namespace) is None


async def test_chart_values_are_checked_before_the_cluster_is_reached(tmp_path: Path) -> None:
    # A kubeconfig that does not exist: any cluster access would fail as KubeconfigInvalid.
    spec = with_max_connections(demo_spec(tmp_path / "no-kubeconfig", "unreached"), -1)

    with pytest.raises(ApplicationError) as raised:
        await environment().run(preflight.preflight, PreflightInput(spec=spec))

    assert raised.value.type == "InvalidSpec"
    assert str(raised.value).endswith("tcp.maxConnections: minimum: got -1, want 1")


async def test_valid_chart_values_pass_the_chart_check(cluster: SimCluster) -> None:
    spec = with_max_connections(demo_spec(cluster.kubeconfig, "good-chart-values"), 256000)

    report = await environment().run(preflight.preflight, PreflightInput(spec=spec))

    assert report.capacity.gpus_asked == 16
