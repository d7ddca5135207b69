"""The fake vLLM server and the routing sidecar, run in-process on loopback pod IPs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from agent_fixtures import MODEL, metric

from clustersim.agent.faults import parse_fault
from clustersim.agent.kubelet.logs import ContainerLog
from clustersim.agent.profile import Durations, TimeScale
from clustersim.agent.workloads.detect import process_for
from clustersim.agent.workloads.process import ExitStatus, Process, ProcessContext, ServingRegistry
from clustersim.agent.workloads.sidecar import RoutingSidecarProcess
from clustersim.agent.workloads.vllm import VllmProcess

# Addresses of their own, far from what a running simulated cluster allocates.
PREFILL_IP = "127.1.250.1"
DECODE_IP = "127.1.250.2"
SCALE = TimeScale(0.003)
DURATIONS = Durations(model_load=480)


def vllm_container(port: int) -> dict[str, Any]:
    script = f"source /opt/vllm/bin/activate\nexec vllm serve \\\n  {MODEL} \\\n  --port {port}\n"
    return {
        "name": "vllm",
        "image": "ghcr.io/llm-d/llm-d:v0.2.0",
        "command": ["/bin/bash", "-c"],
        "args": [script],
    }


SIDECAR = {
    "name": "routing-proxy",
    "image": "ghcr.io/llm-d/llm-d-routing-sidecar:v0.2.0",
    "args": ["--port=8000", "--vllm-port=8200", "--connector=nixlv2"],
}


def context(
    session: aiohttp.ClientSession,
    ip: str,
    container: dict[str, Any],
    registry: ServingRegistry,
    faults: list[Any] | None = None,
) -> ProcessContext:
    pod = {"metadata": {"name": f"pod-{ip}", "namespace": "ns", "labels": {}}, "spec": {}}
    return ProcessContext(
        pod=pod,
        container=container,
        pod_ip=ip,
        env={},
        log=ContainerLog(),
        scale=SCALE,
        durations=DURATIONS,
        registry=registry,
        http=session,
        gateway=None,
        faults=faults or [],
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return response.status, await response.text()
    except aiohttp.ClientConnectionError:
        return 0, ""


async def wait_serving(session: aiohttp.ClientSession, url: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await get(session, url))[0] != 200:
        assert asyncio.get_running_loop().time() < deadline, f"{url} never became healthy"
        await asyncio.sleep(0.05)


async def stop(process: Process, task: asyncio.Task[ExitStatus]) -> ExitStatus:
    process.stop()
    return await asyncio.wait_for(task, 5)


async def test_vllm_port_stays_closed_until_the_model_is_loaded(
    session: aiohttp.ClientSession,
) -> None:
    registry = ServingRegistry()
    ctx = context(session, PREFILL_IP, vllm_container(8000), registry)
    process = process_for(ctx)
    assert isinstance(process, VllmProcess)
    task = asyncio.create_task(process.run())
    await asyncio.sleep(0.4)
    status, _ = await get(session, f"http://{PREFILL_IP}:8000/health")
    assert status == 0, "vLLM must not answer before its engine is initialised"
    assert "Loading safetensors checkpoint shards:" in ctx.log.text()
    await wait_serving(session, f"http://{PREFILL_IP}:8000/health")
    log = ctx.log.text()
    for line in (
        "Starting vLLM API server 0 on http://0.0.0.0:8000",
        "Started server process [1]",
        "Waiting for application startup.",
        "Application startup complete.",
    ):
        assert line in log
    assert registry.is_serving(PREFILL_IP)
    status, body = await get(session, f"http://{PREFILL_IP}:8000/v1/models")
    assert status == 200 and f'"id": "{MODEL}"' in body and '"max_model_len": 163840' in body
    async with session.post(
        f"http://{PREFILL_IP}:8000/v1/completions",
        json={"model": MODEL, "prompt": "Hello there", "max_tokens": 5},
    ) as r:
        answer = await r.json()
    assert answer["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 5,
        "total_tokens": 7,
        "prompt_tokens_details": None,
    }
    assert len(answer["choices"][0]["text"].split()) == 5
    _, metrics = await get(session, f"http://{PREFILL_IP}:8000/metrics")
    assert metric(metrics.encode(), "vllm:generation_tokens_total") == 5
    assert (await stop(process, task)).reason == "Completed"
    assert not registry.is_serving(PREFILL_IP)


async def test_routing_sidecar_runs_prefill_remotely_then_decodes_locally(
    session: aiohttp.ClientSession,
) -> None:
    registry = ServingRegistry()
    processes = [
        process_for(context(session, PREFILL_IP, vllm_container(8000), registry)),
        process_for(context(session, DECODE_IP, vllm_container(8200), registry)),
        process_for(context(session, DECODE_IP, SIDECAR, registry)),
    ]
    assert isinstance(processes[2], RoutingSidecarProcess)
    tasks = [asyncio.create_task(p.run()) for p in processes]
    await wait_serving(session, f"http://{PREFILL_IP}:8000/health")
    await wait_serving(session, f"http://{DECODE_IP}:8200/health")
    async with session.post(
        f"http://{DECODE_IP}:8000/v1/completions",
        json={"model": MODEL, "prompt": "one two three", "max_tokens": 7},
        headers={"x-prefiller-host-port": f"{PREFILL_IP}:8000"},
    ) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["usage"]["completion_tokens"] == 7
    _, prefill = await get(session, f"http://{PREFILL_IP}:8000/metrics")
    _, decode = await get(session, f"http://{DECODE_IP}:8200/metrics")
    assert metric(prefill.encode(), "vllm:prompt_tokens_total") == 3
    assert metric(prefill.encode(), "vllm:generation_tokens_total") == 1
    assert metric(decode.encode(), "vllm:generation_tokens_total") == 7
    for process, task in zip(processes, tasks, strict=True):
        await stop(process, task)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("cuda_oom", ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"]),
        ("nixl", ["NIXL_ERR_BACKEND", "transports 'cuda_ipc','cuda_copy' are not available"]),
        ("nvshmem", ["ibgda_rc_init2rtr failed", "Unable to create ah"]),
    ],
)
async def test_crash_fault_prints_the_error_pattern_and_exits_with_error(
    session: aiohttp.ClientSession, error: str, expected: list[str]
) -> None:
    fault = parse_fault({"kind": "crash", "error": error, "after_seconds": 100}, "f1")
    ctx = context(session, PREFILL_IP, vllm_container(8000), ServingRegistry(), [fault])
    status = await asyncio.wait_for(process_for(ctx).run(), 5)
    assert status == ExitStatus(1, "Error")
    log = ctx.log.text()
    assert all(text in log for text in expected)
    assert "Application startup complete." not in log


async def test_hf_gated_fault_names_the_served_model(session: aiohttp.ClientSession) -> None:
    fault = parse_fault({"kind": "crash", "error": "hf_gated"}, "f2")
    ctx = context(session, PREFILL_IP, vllm_container(8000), ServingRegistry(), [fault])
    await asyncio.wait_for(process_for(ctx).run(), 5)
    assert (
        f"Access to model {MODEL} is restricted" in ctx.log.text()
        and "huggingface_hub.errors.GatedRepoError: 401 Client Error" in ctx.log.text()
    )
