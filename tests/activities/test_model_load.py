"""The model-load wait on a simulated H200 cluster: it finishes when vLLM serves on every pod,
reports weight-loading progress, and fails fast, with the reason and the evidence, on each kind
of fault clustersim injects (image pull, crash patterns, OOM kill, hung load, lost node, missing
capacity, missing Secret)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError

from activities import kube, serving
from spec.activity_io import (
    ApplyModelServiceInput,
    DeleteObjectsInput,
    FailureEvidence,
    HfTokenSecretInput,
    ModelLoadInput,
)
from spec.rollout import RolloutSpec
from tests.activities.conftest import SimCluster
from tests.activities.specs import environment, prepared

# Real seconds: far above a simulated load at time scale 0.01 (480 s -> 4.8 s).
BUDGET = timedelta(seconds=60)
TOKEN = "hf_model_load_test_token"
_namespaces = itertools.count(1)


class Deployed:
    def __init__(self, cluster: SimCluster, spec: RolloutSpec) -> None:
        self.cluster = cluster
        self.spec = spec
        self.namespace = spec.target.namespace

    async def apply(self, with_secret: bool = True) -> None:
        env = environment()
        if with_secret:
            await env.run(
                kube.ensure_hf_token_secret,
                HfTokenSecretInput(
                    target=self.spec.target, hf_token=self.spec.model_service.hf_token
                ),
            )
        await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=self.spec))

    async def wait(self, heartbeats: list[Any] | None = None) -> Any:
        return await environment(heartbeats).run(
            serving.wait_for_model_load, ModelLoadInput(spec=self.spec, role="decode")
        )

    async def failure(self) -> tuple[ApplicationError, FailureEvidence]:
        with pytest.raises(ApplicationError) as raised:
            await self.wait()
        evidence = FailureEvidence.from_details(raised.value.details)
        assert evidence is not None
        assert raised.value.non_retryable
        assert raised.value.type == evidence.reason
        return raised.value, evidence


@pytest_asyncio.fixture
async def deployed(cluster: SimCluster, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Deployed]:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    namespace = f"load-{next(_namespaces)}"
    spec = await prepared(cluster.kubeconfig, namespace, startup_probe=False)
    spec = spec.model_copy(
        update={"budgets": spec.budgets.model_copy(update={"model_load": BUDGET})}
    )
    yield Deployed(cluster, spec)
    cluster.fault("clear")
    await environment().run(
        kube.delete_objects,
        DeleteObjectsInput(
            target=spec.target, rollout=spec.metadata.name, timeout=timedelta(seconds=60)
        ),
    )


async def test_model_load_finishes_when_every_decode_pod_serves(deployed: Deployed) -> None:
    await deployed.apply()
    heartbeats: list[Any] = []
    result = await deployed.wait(heartbeats)
    assert [p.name for p in result.pods] == [
        "ms-wide-ep-llm-d-modelservice-decode-0",
        "ms-wide-ep-llm-d-modelservice-decode-0-1",
    ]
    assert all(p.port == 8200 and "deepseek-ai/DeepSeek-R1-0528" in p.models for p in result.pods)
    assert result.revision_hash
    percents = {
        pod["weights_percent"]
        for (details,) in heartbeats
        for pod in details.get("pods", [])
        if pod.get("weights_percent") is not None
    }
    assert any(0 < p < 100 for p in percents), percents
    # Each pod says which LWS revision and image it runs (the CLI shows new/old per pod).
    last_pods = heartbeats[-1][0]["pods"]
    assert {pod["revision_hash"] for pod in last_pods} == {result.revision_hash}, last_pods
    assert {pod["image"] for pod in last_pods} == {deployed.spec.model_service.vllm_image}
    # list+watch pairs, one log stream and a probe or two per pod: not a poll per second.
    assert result.api_requests < 40
    assert TOKEN not in repr(heartbeats) + result.model_dump_json()


async def test_image_pull_failure_is_named_with_the_image(deployed: Deployed) -> None:
    deployed.cluster.fault(
        "image-pull",
        "--namespace",
        deployed.namespace,
        "--image",
        "ghcr.io/llm-d/llm-d-dev:*",
        "--count",
        "20",
    )
    await deployed.apply()
    error, evidence = await deployed.failure()
    assert error.type == "ImagePull"
    assert "ghcr.io/llm-d/llm-d-dev" in str(error)
    assert evidence.objects and evidence.objects[0].ref.kind == "Pod"


@pytest.mark.parametrize(
    ("crash", "reason", "pattern"),
    [
        ("cuda_oom", "CudaOutOfMemory", "CUDA out of memory"),
        ("nixl", "NixlTransportError", "NIXL_ERR_BACKEND"),
        ("nvshmem", "NvshmemInitFailure", "NVSHMEM"),
        ("hf_gated", "HuggingFaceUnauthorized", "401 Client Error"),
    ],
)
async def test_crash_is_named_from_the_log(
    deployed: Deployed, crash: str, reason: str, pattern: str
) -> None:
    deployed.cluster.fault(
        "crash",
        "--namespace",
        deployed.namespace,
        "--role",
        "decode",
        "--error",
        crash,
        "--after",
        "60",
        "--count",
        "20",
    )
    await deployed.apply()
    error, evidence = await deployed.failure()
    assert error.type == reason
    assert evidence.matched_pattern
    assert any(pattern in line for line in evidence.log_lines), evidence.log_lines


async def test_an_engine_failure_of_unknown_cause_is_a_crash_loop(deployed: Deployed) -> None:
    deployed.cluster.fault(
        "crash",
        "--namespace",
        deployed.namespace,
        "--role",
        "decode",
        "--error",
        "generic",
        "--after",
        "60",
        "--count",
        "20",
    )
    await deployed.apply()
    error, evidence = await deployed.failure()
    assert error.type == "CrashLoop"
    assert evidence.matched_pattern == "vLLM engine failure"
    assert any("simulated engine failure" in line for line in evidence.log_lines)


async def test_oom_kill_is_named(deployed: Deployed) -> None:
    deployed.cluster.fault(
        "oom",
        "--namespace",
        deployed.namespace,
        "--role",
        "decode",
        "--after",
        "60",
        "--count",
        "20",
    )
    await deployed.apply()
    error, _ = await deployed.failure()
    assert error.type == "OOMKilled"


async def test_a_hung_load_fails_long_before_the_budget(deployed: Deployed) -> None:
    deployed.cluster.fault("load-hang", "--namespace", deployed.namespace, "--count", "20")
    await deployed.apply()
    error, evidence = await deployed.failure()
    assert error.type == "ModelLoadStalled"
    assert "Loading safetensors checkpoint shards" in evidence.log_lines[-1]
    assert evidence.data["progress"]["pods"]


async def test_a_slow_load_is_not_a_stall(deployed: Deployed) -> None:
    deployed.cluster.fault(
        "slow-load", "--namespace", deployed.namespace, "--factor", "2", "--count", "20"
    )
    await deployed.apply()
    result = await deployed.wait()
    assert len(result.pods) == 2


async def test_a_lost_node_is_named(deployed: Deployed) -> None:
    await deployed.apply()
    deployed.cluster.fault("node-not-ready", "--duration", "3000")
    error, evidence = await deployed.failure()
    assert error.type == "NodeLost"
    assert evidence.data["node"].startswith("h200-node-")


async def test_missing_gpus_make_pods_unschedulable(deployed: Deployed) -> None:
    deployed.cluster.fault("capacity", "--resource", "nvidia.com/gpu=2", "--duration", "3000")
    await deployed.apply()
    error, evidence = await deployed.failure()
    assert error.type == "Unschedulable"
    assert evidence.data["missing"] == ["nvidia.com/gpu"]
    assert "Insufficient nvidia.com/gpu" in evidence.data["scheduler_message"]


async def test_missing_hf_token_secret_is_create_container_config_error(deployed: Deployed) -> None:
    await deployed.apply(with_secret=False)
    error, evidence = await deployed.failure()
    assert error.type == "CreateContainerConfigError"
    assert TOKEN not in str(error) + evidence.model_dump_json()
    assert evidence.data["secret"] == "llm-d-hf-token"
