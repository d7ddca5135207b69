"""A flaky API server: 500/503/429 answers, dropped watch streams, compacted watch history.
Watches resume from their resourceVersion (relisting only on 410 Gone), requests retry with
back-off, and the activities still complete with the right result."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio.testing import ActivityEnvironment

import manifests
from activities import kube, waits
from k8s.watching import Collection, Informer, Wakeup
from spec.activity_io import (
    ApplyCrdsInput,
    ApplyModelServiceInput,
    EnsureNamespaceInput,
    RestoreInput,
    SnapshotInput,
    WaitForObjectInput,
)
from tests.activities.conftest import SimCluster
from tests.activities.specs import apply_objects, demo_spec, prepared


@pytest.fixture
def faults(kube_api: SimCluster) -> Iterator[SimCluster]:
    yield kube_api
    kube_api.api_fault("clear")


def config_map(namespace: str, name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"n": name},
    }


async def until(condition: object, wakeup: Wakeup, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, "condition not reached in time"
        await wakeup.wait(min(remaining, 0.5))


async def test_watch_resumes_from_resource_version_when_the_stream_is_cut(
    faults: SimCluster,
) -> None:
    client = faults.client()
    await ActivityEnvironment().run(
        kube.ensure_namespace, EnsureNamespaceInput(target=faults.target("watch-cut"))
    )
    faults.api_fault("--cut-watch-after", "1", "--verb", "watch", "--path", "watch-cut")
    wakeup = Wakeup()
    informer = Informer(client, Collection("v1", "ConfigMap", "watch-cut"), wakeup.set).start()
    try:
        for index in range(6):
            client.apply(config_map("watch-cut", f"cm-{index}"), force=False)
        await until(
            lambda: (
                len([o for o in informer.objects() if o["metadata"]["name"].startswith("cm-")]) == 6
            ),
            wakeup,
        )
        assert informer.relists == 1  # one list at start: every reconnect resumed
        assert informer.reconnects >= 3
    finally:
        informer.stop()


async def test_watch_relists_after_410_gone(faults: SimCluster) -> None:
    client = faults.client()
    await ActivityEnvironment().run(
        kube.ensure_namespace, EnsureNamespaceInput(target=faults.target("watch-gone"))
    )
    wakeup = Wakeup()
    informer = Informer(client, Collection("v1", "ConfigMap", "watch-gone"), wakeup.set).start()
    try:
        await until(lambda: informer.synced, wakeup)
        # Drop the stream and the history it would resume from: the resume answers 410.
        faults.api_fault("compact")
        faults.api_fault(
            "--cut-watch-after", "1", "--verb", "watch", "--path", "watch-gone", "--count", "1"
        )
        client.apply(config_map("watch-gone", "first"), force=False)
        client.apply(config_map("watch-gone", "second"), force=False)
        await until(
            lambda: {o["metadata"]["name"] for o in informer.objects()} >= {"first", "second"},
            wakeup,
        )
        client.apply(config_map("watch-gone", "third"), force=False)
        await until(lambda: informer.get("watch-gone/third") is not None, wakeup)
    finally:
        informer.stop()


async def test_applies_and_restore_complete_under_20_percent_errors(faults: SimCluster) -> None:
    spec = await prepared(faults.kubeconfig, "flaky")
    faults.api_fault("--error", "500", "--rate", "0.1")
    faults.api_fault("--error", "503", "--rate", "0.05", "--retry-after", "0")
    faults.api_fault("--error", "429", "--rate", "0.05", "--retry-after", "0")
    env = ActivityEnvironment()
    first = await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    assert first.apply.count("created") == len(manifests.render_model_service(spec))
    second = await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
    assert not second.apply.changed
    await env.run(
        kube.snapshot_objects, SnapshotInput(target=spec.target, rollout="wide-ep", revision="r1")
    )
    restore = RestoreInput(target=spec.target, rollout="wide-ep", revision="r1")
    await env.run(kube.restore_snapshot, restore)
    again = await env.run(kube.restore_snapshot, restore)
    assert not again.changed and again.deleted == []


async def test_gateway_wait_sees_programmed_through_cut_streams_and_errors(
    faults: SimCluster,
) -> None:
    spec = demo_spec(faults.kubeconfig, "flaky-gateway")
    env = ActivityEnvironment()
    await env.run(kube.ensure_namespace, EnsureNamespaceInput(target=spec.target))
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "infra-wide-ep-inference-gateway", "namespace": "flaky-gateway"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{"name": "default", "port": 80, "protocol": "HTTP"}],
        },
    }
    await env.run(
        kube.apply_crds,
        ApplyCrdsInput(
            target=spec.target, bundle=spec.dependencies.gateway_api_crds, bundle_name="gateway-api"
        ),
    )
    await apply_objects(spec.target, [gateway])
    faults.api_fault("--cut-watch-after", "1", "--verb", "watch")
    faults.api_fault("--error", "500", "--rate", "0.2")
    waiting = asyncio.ensure_future(
        env.run(
            waits.wait_for_gateway,
            WaitForObjectInput(
                target=spec.target,
                name="infra-wide-ep-inference-gateway",
                timeout=timedelta(seconds=60),
            ),
        )
    )
    await asyncio.sleep(0.5)
    client = faults.client()
    for status in ("False", "True"):
        client.request(
            "PATCH",
            "/apis/gateway.networking.k8s.io/v1/namespaces/flaky-gateway/gateways/infra-wide-ep-inference-gateway/status",
            [("fieldManager", "test-gateway-controller"), ("force", "true")],
            body={
                **gateway,
                "status": {
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": "True",
                            "reason": "Accepted",
                            "message": "",
                            "lastTransitionTime": "2025-07-26T10:00:00Z",
                            "observedGeneration": 1,
                        },
                        {
                            "type": "Programmed",
                            "status": status,
                            "reason": "Programmed",
                            "message": "",
                            "lastTransitionTime": "2025-07-26T10:00:00Z",
                            "observedGeneration": 1,
                        },
                    ]
                },
            },
            content_type="application/apply-patch+yaml",
        )
    result = await asyncio.wait_for(waiting, 30)
    assert "Programmed=True" in result.detail
