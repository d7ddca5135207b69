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


def bucket(text: str, name: str, le: str) -> float:
    """One cumulative bucket of a histogram in a /metrics answer."""
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and f'le="{le}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no bucket le={le} of {name}")


async def serve_pd_pair(
    session: aiohttp.ClientSession, decode_faults: list[Any] | None = None
) -> tuple[list[Process], list[asyncio.Task[ExitStatus]]]:
    registry = ServingRegistry()
    processes = [
        process_for(context(session, PREFILL_IP, vllm_container(8000), registry)),
        process_for(context(session, DECODE_IP, vllm_container(8200), registry, decode_faults)),
        process_for(context(session, DECODE_IP, SIDECAR, registry)),
    ]
    tasks = [asyncio.create_task(p.run()) for p in processes]
    await wait_serving(session, f"http://{PREFILL_IP}:8000/health")
    await wait_serving(session, f"http://{DECODE_IP}:8200/health")
    return processes, tasks


async def pd_requests(session: aiohttp.ClientSession, count: int, words: int) -> list[int]:
    statuses = []
    for index in range(count):
        async with session.post(
            f"http://{DECODE_IP}:8000/v1/completions",
            json={"model": MODEL, "prompt": " ".join(["word"] * words) + f" {index}",
                  "max_tokens": 16},
            headers={"x-prefiller-host-port": f"{PREFILL_IP}:8000"},
        ) as response:
            statuses.append(response.status)
    return statuses


async def decode_metrics(
    session: aiohttp.ClientSession, faults: list[Any] | None, count: int = 40, words: int = 500
) -> tuple[list[int], str, str]:
    processes, tasks = await serve_pd_pair(session, faults)
    try:
        statuses = await pd_requests(session, count, words)
        _, decode = await get(session, f"http://{DECODE_IP}:8200/metrics")
        _, prefill = await get(session, f"http://{PREFILL_IP}:8000/metrics")
    finally:
        for process, task in zip(processes, tasks, strict=True):
            await stop(process, task)
    return statuses, decode, prefill


async def test_vllm_exports_latency_histograms_and_kv_transfers_per_request(
    session: aiohttp.ClientSession,
) -> None:
    statuses, decode, prefill = await decode_metrics(session, None)
    assert statuses == [200] * 40
    for name in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:time_per_output_token_seconds"):
        assert metric(decode.encode(), f"{name}_count") == 40, name
    # Every decode took its KV cache from the prefill pod over NIXL.
    assert metric(decode.encode(), "vllm:nixl_xfer_time_seconds_count") == 40
    assert metric(prefill.encode(), "vllm:nixl_xfer_time_seconds_count") == 0
    completions = 'http_requests_total{handler="/v1/completions",method="POST",status="2xx"}'
    assert f"{completions} 40.0" in decode
    # A decode with a transferred cache answers its first token in tens of milliseconds; the
    # spread of the seeded jitter puts them over several of vLLM's buckets.
    ttft = "vllm:time_to_first_token_seconds"
    assert bucket(decode, ttft, "0.02") < 40 and bucket(decode, ttft, "0.1") == 40
    # Time per output token sits around the 28 ms decode step.
    tpot = "vllm:time_per_output_token_seconds"
    assert bucket(decode, tpot, "0.01") == 0 and bucket(decode, tpot, "0.05") == 40


async def test_vllm_ttft_grows_with_prompt_length(session: aiohttp.ClientSession) -> None:
    _, _, short_prefill = await decode_metrics(session, None, count=20, words=50)
    _, _, long_prefill = await decode_metrics(session, None, count=20, words=4000)
    ttft = "vllm:time_to_first_token_seconds"
    short = metric(short_prefill.encode(), f"{ttft}_sum")
    long = metric(long_prefill.encode(), f"{ttft}_sum")
    assert long > 5 * short, (short, long)


async def test_degrade_fault_slows_first_tokens_fails_requests_and_skips_kv_transfer(
    session: aiohttp.ClientSession,
) -> None:
    ttft = "vllm:time_to_first_token_seconds"
    _, healthy, _ = await decode_metrics(session, None)
    slow = parse_fault({"kind": "degrade", "ttft_factor": 1.6}, "d1")
    _, slower, _ = await decode_metrics(session, [slow])
    # Same seed, same requests: exactly the factor on the sum.
    assert metric(slower.encode(), f"{ttft}_sum") == pytest.approx(
        1.6 * metric(healthy.encode(), f"{ttft}_sum")
    )

    errors = parse_fault({"kind": "degrade", "error_rate": 0.05}, "d2")
    statuses, failing, _ = await decode_metrics(session, [errors])
    assert statuses.count(500) == 2 and statuses[0] == 200
    assert 'status="5xx"} 2.0' in failing
    assert metric(failing.encode(), "vllm:request_success_total") == 38

    no_pd = parse_fault({"kind": "degrade", "no_pd": True}, "d3")
    statuses, local, prefill = await decode_metrics(session, [no_pd])
    assert statuses == [200] * 40
    assert metric(local.encode(), "vllm:nixl_xfer_time_seconds_count") == 0
    # The sidecar still asked the prefill pod; the decode ignored what it sent.
    assert metric(prefill.encode(), "vllm:request_success_total") == 40


def test_degrade_fault_lasts_until_cleared_and_checks_its_fields() -> None:
    fault = parse_fault({"kind": "degrade", "match": {"image": "x:*"}, "error_rate": 0.1}, "d")
    assert fault.count is None and fault.duration_seconds is None and not fault.exhausted
    with pytest.raises(ValueError, match="error_rate must be at most 1"):
        parse_fault({"kind": "degrade", "error_rate": 2}, "d")
    with pytest.raises(ValueError, match="no_pd must be true or false"):
        parse_fault({"kind": "degrade", "no_pd": "yes"}, "d")
