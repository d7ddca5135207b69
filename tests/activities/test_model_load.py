"""The model-load wait on a simulated H200 cluster: it finishes when vLLM serves on every pod,
reports weight-loading progress, and fails fast, with the reason and the evidence, on each kind
of fault clustersim injects (image pull, crash patterns, OOM kill, hung load, lost node, missing
capacity, missing Secret)."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
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
from workflows.calls import HEARTBEAT_TIMEOUT

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


class BeatClock:
    """Heartbeats with the time each arrived: the longest silence is what Temporal would see."""

    def __init__(self) -> None:
        self.details: list[Any] = []
        self.times: list[float] = []

    def environment(self) -> Any:
        env = environment()

        def beat(*details: Any) -> None:
            self.details.append(details)
            self.times.append(time.monotonic())

        env.on_heartbeat = beat
        return env

    def longest_silence(self, until: float) -> float:
        marks = [*self.times, until]
        return max(b - a for a, b in itertools.pairwise(marks))


# ~21 s (a load slowed three times over, heartbeating throughout): with the long scenarios; the
# fault matrix's pods-log-500 cell checks the same end through a whole rollout in `make test`.
@pytest.mark.long
async def test_a_log_endpoint_answering_500_degrades_to_probes_and_keeps_heartbeating(
    deployed: Deployed,
) -> None:
    """Issue 14: with pods/log answering 500 (kubelet unreachable) the wait stopped
    heartbeating and was cancelled again and again (`Heartbeat timeout`)."""
    deployed.cluster.api_fault(
        "--error", "500", "--path", f"namespaces/{deployed.namespace}/pods/.*/log$"
    )
    # A load long enough (about 14 s) that the failed log follow is on record before it serves.
    deployed.cluster.fault(
        "slow-load", "--namespace", deployed.namespace, "--factor", "3", "--count", "20"
    )
    await deployed.apply()
    clock = BeatClock()
    result = await clock.environment().run(
        serving.wait_for_model_load, ModelLoadInput(spec=deployed.spec, role="decode")
    )
    ended = time.monotonic()
    deployed.cluster.api_fault("clear")
    assert len(result.pods) == 2
    assert clock.longest_silence(ended) < HEARTBEAT_TIMEOUT.total_seconds()
    details = [pod["detail"] for (beat,) in clock.details for pod in beat.get("pods", [])]
    assert any("log unreadable" in d and "HTTP 500" in d for d in details), details


# ~23 s (the refusal must last PROXY_REFUSED_SECONDS, heartbeating through it): with the long
# scenarios; the fault matrix's pod-proxy-400 cell checks the same end through a whole rollout.
@pytest.mark.long
async def test_a_pod_proxy_refused_persistently_is_named_with_the_api_servers_words(
    deployed: Deployed,
) -> None:
    """The pod proxy answering 400 (with the log endpoint down too) was "not serving yet" until
    the budget ran out; it is PodProxyRefused, naming both endpoints, heartbeating meanwhile."""
    namespace = deployed.namespace
    deployed.cluster.api_fault("--error", "500", "--path", f"namespaces/{namespace}/pods/.*/log$")
    deployed.cluster.api_fault(
        "--error",
        "400",
        "--path",
        f"namespaces/{namespace}/pods/.*/proxy",
        "--message",
        "error trying to reach service: tls: failed to verify certificate",
    )
    await deployed.apply()
    clock = BeatClock()
    with pytest.raises(ApplicationError) as raised:
        await clock.environment().run(
            serving.wait_for_model_load, ModelLoadInput(spec=deployed.spec, role="decode")
        )
    ended = time.monotonic()
    deployed.cluster.api_fault("clear")
    assert raised.value.type == "PodProxyRefused" and raised.value.non_retryable
    message = str(raised.value)
    assert "refused to proxy" in message and "tls: failed to verify certificate" in message
    assert "log could not be read" in message and "HTTP 500" in message
    assert clock.longest_silence(ended) < HEARTBEAT_TIMEOUT.total_seconds()


async def test_a_hang_the_startup_probe_kills_is_a_stalled_load_with_its_last_progress(
    cluster: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a hung load the startup probe killed was reported as `CrashLoop ... code 137`;
    the stall showed only in the log lines. The probe window (300 simulated s, 3 s here) ends
    long before the wait's own stall check (1% of a 300 s budget after the last progress)."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    namespace = f"load-{next(_namespaces)}"
    spec = await prepared(cluster.kubeconfig, namespace, startup_probe=True)
    spec = spec.model_copy(
        update={"budgets": spec.budgets.model_copy(update={"model_load": timedelta(seconds=300)})}
    )
    deployed = Deployed(cluster, spec)
    cluster.fault("load-hang", "--namespace", namespace, "--count", "20")
    try:
        await deployed.apply()
        error, evidence = await deployed.failure()
    finally:
        cluster.fault("clear")
        await environment().run(
            kube.delete_objects,
            DeleteObjectsInput(
                target=spec.target, rollout=spec.metadata.name, timeout=timedelta(seconds=60)
            ),
        )
    assert error.type == "ModelLoadStalled", str(error)
    assert "startup probe killed the container" in str(error)
    assert "stopped at 39%" in str(error)
    shards = [
        line for line in evidence.log_lines if "Loading safetensors checkpoint shards" in line
    ]
    assert shards and "39%" in shards[-1], evidence.log_lines


@contextlib.contextmanager
def busy_machine(seconds: float = 90.0) -> Iterator[None]:
    """Two CPU burners of our own (bounded: each exits after `seconds`), stopped by PID."""
    burn = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=10)


async def test_a_cuda_oom_crash_is_named_from_the_exited_instances_log_on_a_busy_machine(
    deployed: Deployed,
) -> None:
    """Issue 14: under load the container restarted between the status and the log read, and
    the diagnosis read the new instance's log: `CrashLoop` instead of `CudaOutOfMemory`. The
    exited instance's log is read, whichever (current or previous) it is by then."""
    deployed.cluster.fault(
        "crash",
        "--namespace",
        deployed.namespace,
        "--role",
        "decode",
        "--error",
        "cuda_oom",
        "--after",
        "60",
        "--count",
        "20",
    )
    with busy_machine():
        await deployed.apply()
        error, evidence = await deployed.failure()
    assert error.type == "CudaOutOfMemory", str(error)
    assert any("CUDA out of memory" in line for line in evidence.log_lines)
