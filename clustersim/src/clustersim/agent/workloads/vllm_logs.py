"""The log lines a vLLM server writes while it starts, serves and fails.

Shapes follow vLLM 0.10 as the llm-d wide-EP guide shows them (the guide waits for "Starting vLLM
API server 0 on http://0.0.0.0:8200" and uvicorn's "Application startup complete."); the failure
texts are the error patterns operators grep for (CUDA OOM, NIXL/UCX, NVSHMEM IBGDA, gated repo).
"""

from __future__ import annotations

import datetime as dt

from clustersim.agent.meta import utc_now

SHARDS = 163


def vllm_prefix(level: str, source: str, moment: dt.datetime | None = None) -> str:
    stamp = (moment or utc_now()).strftime("%m-%d %H:%M:%S")
    return f"{level} {stamp} [{source}]"


def info(source: str, text: str) -> str:
    return f"{vllm_prefix('INFO', source)} {text}"


def banner_lines(model: str, port: int, args: dict[str, object]) -> list[str]:
    rendered = ", ".join(f"{k!r}: {v!r}" for k, v in args.items())
    return [
        info("__init__.py:244", "Automatically detected platform cuda."),
        info("api_server.py:1395", "vLLM API server version 0.10.0"),
        info("cli_args.py:325", f"non-default args: {{{rendered}}}"),
        info(
            "config.py:841",
            "This model supports multiple tasks: {'generate'}. Defaulting to 'generate'.",
        ),
        info("config.py:1472", f"Using max model len 163840 for {model}"),
        info("core.py:526", "Waiting for init message from front-end."),
    ]


def _clock(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def shard_progress_line(done: int, elapsed: float, total_estimate: float) -> str:
    """tqdm's "Loading safetensors checkpoint shards" line at `done` of 163 shards."""
    percent = int(done * 100 / SHARDS)
    if done == 0:
        return (
            f"Loading safetensors checkpoint shards:   0% Completed | 0/{SHARDS} [00:00<?, ?it/s]"
        )
    rate = f"{elapsed / done:.2f}s/it"
    remaining = _clock(max(0.0, total_estimate - elapsed))
    return (
        f"Loading safetensors checkpoint shards: {percent:3d}% Completed | "
        f"{done}/{SHARDS} [{_clock(elapsed)}<{remaining}, {rate}]"
    )


def weights_loaded_lines(load_seconds: float) -> list[str]:
    return [
        info("default_loader.py:262", f"Loading weights took {load_seconds:.2f} seconds"),
        info(
            "gpu_model_runner.py:1892",
            f"Model loading took 83.58 GiB and {load_seconds + 1.3:.6f} seconds",
        ),
    ]


def warmup_lines() -> list[str]:
    return [
        info("backends.py:530", "Dynamo bytecode transform time: 11.42 s"),
        info("kv_cache_utils.py:833", "GPU KV cache size: 1,015,808 tokens"),
        info("gpu_model_runner.py:2408", "Graph capturing finished in 24 secs, took 1.93 GiB"),
        info(
            "core.py:172", "init engine (profile, create kv cache, warmup model) took 98.77 seconds"
        ),
    ]


def server_start_lines(port: int) -> list[str]:
    return [
        info("api_server.py:1818", f"Starting vLLM API server 0 on http://0.0.0.0:{port}"),
        info("launcher.py:29", "Available routes are:"),
        info("launcher.py:37", "Route: /health, Methods: GET"),
        info("launcher.py:37", "Route: /v1/models, Methods: GET"),
        info("launcher.py:37", "Route: /v1/completions, Methods: POST"),
        info("launcher.py:37", "Route: /metrics, Methods: GET"),
        "INFO:     Started server process [1]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
    ]


def throughput_line(prompt_tps: float, generation_tps: float) -> str:
    return info(
        "loggers.py:122",
        f"Engine 000: Avg prompt throughput: {prompt_tps:.1f} tokens/s, Avg generation "
        f"throughput: {generation_tps:.1f} tokens/s, Running: 0 reqs, Waiting: 0 reqs, "
        "GPU KV cache usage: 0.0%, Prefix cache hit rate: 0.0%",
    )


def _traceback(final: list[str]) -> list[str]:
    error = vllm_prefix("ERROR", "core.py:586")
    return [
        f"{error} EngineCore failed to start.",
        f"{error} Traceback (most recent call last):",
        f'{error}   File "/opt/vllm/lib64/python3.12/site-packages/vllm/v1/engine/core.py", '
        "line 577, in run_engine_core",
        f"{error}     engine_core = DPEngineCoreProc(*args, **kwargs)",
        *[f"{error} {line}" for line in final],
    ]


def crash_lines(error: str, model: str, pod_name: str) -> list[str]:
    """The lines a container prints before dying of `error` (see faults.CRASH_ERRORS)."""
    if error == "cuda_oom":
        oom = (
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.00 GiB. GPU 0 has "
            "a total capacity of 139.81 GiB of which 1.46 GiB is free. Including non-PyTorch "
            "memory, this process has 138.33 GiB memory in use. Of the allocated memory "
            "132.05 GiB is allocated by PyTorch, and 4.12 GiB is reserved by PyTorch but "
            "unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation."
        )
        return [
            *_traceback([oom]),
            "RuntimeError: Engine core initialization failed. See root cause above.",
        ]
    if error == "nixl":
        return [
            f"[1753524192.912331] [{pod_name}:187  :0]     ucp_context.c:2339 UCX  ERROR   "
            "transports 'cuda_ipc','cuda_copy' are not available, please use one or more of: "
            "cma, posix, self, sysv, tcp",
            *_traceback(
                [
                    '  File "/opt/vllm/lib64/python3.12/site-packages/nixl/_api.py", line 131, '
                    "in __init__",
                    "nixl._bindings.nixlBackendError: NIXL_ERR_BACKEND",
                ]
            ),
        ]
    if error == "nvshmem":
        return [
            "/workspace/nvshmem/src/modules/transport/ibgda/ibgda.cpp:2089: NULL value "
            "Unable to create ah.",
            "/workspace/nvshmem/src/modules/transport/ibgda/ibgda.cpp:3033: non-zero status: 22 "
            "ibgda_rc_init2rtr failed",
            "/workspace/nvshmem/src/host/transport/transport.cpp:417: non-zero status: 7 "
            "connect EPS failed",
            *_traceback(["RuntimeError: DeepEP error: NVSHMEM initialization failed"]),
        ]
    if error == "hf_gated":
        return [
            "Traceback (most recent call last):",
            '  File "/opt/vllm/lib64/python3.12/site-packages/huggingface_hub/utils/'
            '_http.py", line 409, in hf_raise_for_status',
            "huggingface_hub.errors.GatedRepoError: 401 Client Error. "
            "(Request ID: Root=1-6884d3f1-1b1f0c4d2a3e4f5a6b7c8d9e;"
            "3c1f8a2e-9d4b-4e6f-8a1b-2c3d4e5f6a7b)",
            "",
            "Cannot access gated repo for url "
            f"https://huggingface.co/{model}/resolve/main/config.json.",
            f"Access to model {model} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in.",
        ]
    return _traceback(["RuntimeError: simulated engine failure"])
