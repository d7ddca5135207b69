"""The example specs pointed at a test cluster and namespace, ready for activities to run on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities import kube
from activities.failures import target_client
from k8s import apply_all
from spec import RolloutSpec, load_spec
from spec.activity_io import ApplyCrdsInput, ApplyResult, EnsureNamespaceInput
from spec.rollout import CrdBundle, Target

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> RolloutSpec:
    return load_spec(EXAMPLES / name)


def demo_spec(kubeconfig: Path, namespace: str, **model_service: Any) -> RolloutSpec:
    """examples/demo.yaml on this cluster, in `namespace`, with `model_service` fields changed."""
    spec = example("demo.yaml")
    target = spec.target.model_copy(update={"kubeconfig": str(kubeconfig), "namespace": namespace})
    service = spec.model_service.model_copy(update=model_service)
    return spec.model_copy(update={"target": target, "model_service": service})


BUNDLES = ("gateway-api", "inference-extension", "leaderworkerset")


def environment(heartbeats: list[Any] | None = None) -> ActivityEnvironment:
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.append(details)
    return env


async def prepared(kubeconfig: Path, namespace: str, **changes: Any) -> RolloutSpec:
    """The demo spec in a fresh namespace, with every CRD it needs installed."""
    spec = demo_spec(kubeconfig, namespace, **changes)
    env = environment()
    await env.run(kube.ensure_namespace, EnsureNamespaceInput(target=spec.target))
    for bundle in BUNDLES:
        await env.run(
            kube.apply_crds,
            ApplyCrdsInput(
                target=spec.target, bundle=CrdBundle(version="v1.0.0"), bundle_name=bundle
            ),
        )
    return spec


async def apply_objects(
    target: Target, objects: list[dict[str, Any]], force: bool = False
) -> ApplyResult:
    """Server-side apply `objects` as the Kubernetes activities do (k8s.apply_all inside
    target_client), so what the API server refuses arrives as the same Temporal error."""
    async with target_client(target) as client:
        return await asyncio.to_thread(apply_all, client, objects, force, target.namespace)
