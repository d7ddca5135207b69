"""A fake vLLM OpenAI-compatible server that takes time to load its model, as the real one does.

Until the simulated load completes the port is closed (real vLLM binds its HTTP server only after
the engine is initialised), so `/health` fails with "connection refused". Then it serves
`/health`, `/v1/models` (max_model_len 163840), `/v1/completions`, `/v1/chat/completions` and
`/metrics` (vllm:* counters, the latency histograms of workloads/vllm_stats.py, and the HTTP
request counts by status class that vLLM's API server exports). A request carrying
`kv_transfer_params.do_remote_decode` is a prefill request (one generated token); one carrying
`do_remote_prefill` is the decode half. A `degrade` fault on the container stages a regression.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shlex
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from clustersim.agent.meta import KubeObject
from clustersim.agent.workloads import vllm_logs
from clustersim.agent.workloads.process import ExitStatus, Process, ProcessContext
from clustersim.agent.workloads.tokens import count_tokens, generate
from clustersim.agent.workloads.vllm_stats import (
    Degradation,
    LatencyHistograms,
    LatencyModel,
)

MAX_MODEL_LEN = 163840
_VLLM_SERVE = re.compile(r"\bvllm\s+serve\b")
_API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_VAR = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


@dataclass(frozen=True)
class VllmCommand:
    model: str
    served_name: str
    port: int
    args: dict[str, object]


def command_text(container: KubeObject) -> str:
    parts = [str(p) for p in (container.get("command") or []) + (container.get("args") or [])]
    return " ".join(parts)


def runs_vllm(container: KubeObject) -> bool:
    text = command_text(container)
    return bool(_VLLM_SERVE.search(text)) or _API_SERVER_MODULE in text


def _tokens(text: str) -> list[str]:
    text = text.replace("\\\n", " ")
    try:
        return shlex.split(text, comments=False)
    except ValueError:
        return text.split()


def _resolve(value: str, env: dict[str, str]) -> str:
    match = _VAR.match(value)
    if match:
        return env.get(match.group(1), value)
    return value


def parse_vllm_command(container: KubeObject, env: dict[str, str]) -> VllmCommand | None:
    """Model, served name and port of `vllm serve MODEL --port N ...` (or the api_server module)."""
    if not runs_vllm(container):
        return None
    tokens = _tokens(command_text(container))
    model = ""
    options: dict[str, str] = {}
    for index, token in enumerate(tokens):
        if token == "serve" and index > 0 and tokens[index - 1].endswith("vllm"):
            following = tokens[index + 1] if index + 1 < len(tokens) else ""
            if following and not following.startswith("-"):
                model = following
        if token.startswith("--"):
            name, sep, value = token[2:].partition("=")
            if not sep and index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
                value = tokens[index + 1]
            options[name.replace("_", "-")] = _resolve(value, env)
    model = options.get("model", model) or "facebook/opt-125m"
    try:
        port = int(options.get("port", "8000"))
    except ValueError:
        port = 8000
    args: dict[str, object] = {"model": model, "port": port}
    if "trust-remote-code" in options:
        args["trust_remote_code"] = True
    if "enable-expert-parallel" in options:
        args["enable_expert_parallel"] = True
    for key in ("data-parallel-size", "data-parallel-size-local", "tensor-parallel-size"):
        value = options.get(key, "")
        # Shell arithmetic such as $((LWS_GROUP_SIZE * DP_SIZE_LOCAL)) is not evaluated here.
        if value and "$" not in value:
            args[key.replace("-", "_")] = int(value) if value.isdigit() else value
    return VllmCommand(model, options.get("served-model-name", model), port, args)


@dataclass
class VllmMetrics:
    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: dict[str, int] = field(default_factory=dict)
    running: int = 0
    latency: LatencyHistograms = field(default_factory=LatencyHistograms)
    # Completion requests by HTTP status class, as prometheus-fastapi-instrumentator counts them.
    http_status: dict[str, int] = field(default_factory=dict)

    def render(self, model: str) -> str:
        labels = f'engine="0",model_name="{model}"'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{labels}}} {float(self.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{labels}}} 0.0",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{labels}}} 0.0",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{labels}}} {float(self.prompt_tokens)}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{labels}}} {float(self.generation_tokens)}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason in sorted(self.success or {"length": 0}):
            count = float(self.success.get(reason, 0))
            lines.append(
                f'vllm:request_success_total{{engine="0",finished_reason="{reason}",'
                f'model_name="{model}"}} {count}'
            )
        lines += self.latency.render(labels, 'engine="0"')
        lines += [
            "# HELP http_requests_total Total number of requests by method, status and handler.",
            "# TYPE http_requests_total counter",
        ]
        for status in sorted(self.http_status):
            lines.append(
                f'http_requests_total{{handler="/v1/completions",method="POST",'
                f'status="{status}"}} {float(self.http_status[status])}'
            )
        return "\n".join(lines) + "\n"


def _error(status: int, message: str, kind: str) -> web.Response:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.json_response(body, status=status)


class VllmEngine:
    """The HTTP face of one loaded model."""

    def __init__(
        self,
        command: VllmCommand,
        pod_ip: str,
        log_line: Any,
        degradation: Degradation | None = None,
        in_flight: Any = None,
    ) -> None:
        self.command = command
        self.pod_ip = pod_ip
        self.metrics = VllmMetrics()
        self.latency = LatencyModel(f"{pod_ip}:{command.port}", degradation or Degradation())
        self._in_flight = in_flight or (lambda: 0)
        self.created = int(time.time())
        self._log_line = log_line
        self._last_stats = 0.0
        self._window_prompt = 0
        self._window_generation = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/ping", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/metrics", self.prometheus)
        return app

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(self, _: web.Request) -> web.Response:
        return web.json_response({"version": "0.10.0"})

    async def models(self, _: web.Request) -> web.Response:
        name = self.command.served_name
        model = {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "vllm",
            "root": self.command.model,
            "parent": None,
            "max_model_len": MAX_MODEL_LEN,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex}",
                    "object": "model_permission",
                    "created": self.created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        return web.json_response({"object": "list", "data": [model]})

    async def prometheus(self, _: web.Request) -> web.Response:
        return web.Response(
            text=self.metrics.render(self.command.served_name),
            content_type="text/plain",
            charset="utf-8",
        )

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Invalid JSON body", "BadRequestError")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object", "BadRequestError")
        model = body.get("model")
        if model is not None and model != self.command.served_name:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        return body

    def _failed(self) -> web.Response | None:
        """A staged failure (the `degrade` fault's error rate): HTTP 500, counted as 5xx."""
        if not self.latency.fails_next():
            return None
        self._count_status("5xx")
        return _error(500, "EngineCore encountered an issue.", "InternalServerError")

    def _count_status(self, status: str) -> None:
        self.metrics.http_status[status] = self.metrics.http_status.get(status, 0) + 1

    def _account(
        self, prompt_tokens: int, generated: int, finish: str, remote_prefill: bool = False
    ) -> None:
        running = max(0, int(self._in_flight()) - 1)
        cost = self.latency.cost(prompt_tokens, generated, running, remote_prefill)
        self.metrics.latency.record(cost, generated)
        self._count_status("2xx")
        self.metrics.prompt_tokens += prompt_tokens
        self.metrics.generation_tokens += generated
        self.metrics.success[finish] = self.metrics.success.get(finish, 0) + 1
        self._window_prompt += prompt_tokens
        self._window_generation += generated
        now = time.monotonic()
        # vLLM logs throughput at most every 10 s of real time, and only when there was work.
        if now - self._last_stats >= 10.0:
            elapsed = 10.0 if self._last_stats == 0.0 else now - self._last_stats
            self._log_line(
                vllm_logs.throughput_line(
                    self._window_prompt / elapsed, self._window_generation / elapsed
                )
            )
            self._last_stats = now
            self._window_prompt = self._window_generation = 0

    def _plan(
        self, body: dict[str, Any], prompt: str
    ) -> tuple[int, int, dict[str, Any] | None, bool]:
        """Prompt tokens, tokens to generate, the prefill's KV reply, and whether the KV cache
        comes from a prefill pod (the decode half of a P/D request)."""
        prompt_tokens = count_tokens(prompt)
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_completion_tokens", 16)
        try:
            wanted = max(0, int(max_tokens))
        except (TypeError, ValueError):
            wanted = 16
        wanted = min(wanted, max(0, MAX_MODEL_LEN - prompt_tokens))
        transfer = body.get("kv_transfer_params")
        reply: dict[str, Any] | None = None
        if isinstance(transfer, dict) and transfer.get("do_remote_decode"):
            wanted = 1
            reply = {
                "do_remote_prefill": True,
                "do_remote_decode": False,
                "remote_block_ids": list(range(max(1, prompt_tokens // 64 + 1))),
                "remote_engine_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.pod_ip)),
                "remote_host": self.pod_ip,
                "remote_port": 5600,
                "tp_size": 1,
            }
        remote = isinstance(transfer, dict) and bool(transfer.get("do_remote_prefill"))
        return prompt_tokens, wanted, reply, remote

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt = " ".join(str(p) for p in prompt)
        if not isinstance(prompt, str):
            return _error(400, "Either prompt or prompt_embeds must be provided", "BadRequestError")
        prompt_tokens, wanted, transfer, remote = self._plan(body, prompt)
        failed = self._failed()
        if failed is not None:
            return failed
        text = generate(prompt, wanted)
        self._account(prompt_tokens, wanted, "length", remote)
        request_id = f"cmpl-{uuid.uuid4().hex}"
        if body.get("stream"):
            return await self._stream(request, request_id, "text_completion", text)
        return web.json_response(
            {
                "id": request_id,
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.command.served_name,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": "length",
                        "stop_reason": None,
                        "prompt_logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens + wanted,
                    "completion_tokens": wanted,
                    "prompt_tokens_details": None,
                },
                "kv_transfer_params": transfer,
            }
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages must be a non-empty list", "BadRequestError")
        prompt = "\n".join(str((m or {}).get("content", "")) for m in messages)
        prompt_tokens, wanted, transfer, remote = self._plan(body, prompt)
        failed = self._failed()
        if failed is not None:
            return failed
        text = generate(prompt, wanted).strip()
        self._account(prompt_tokens, wanted, "length", remote)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        return web.json_response(
            {
                "id": request_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.command.served_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "tool_calls": []},
                        "logprobs": None,
                        "finish_reason": "length",
                        "stop_reason": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "total_tokens": prompt_tokens + wanted,
                    "completion_tokens": wanted,
                },
                "kv_transfer_params": transfer,
            }
        )

    async def _stream(
        self, request: web.Request, request_id: str, kind: str, text: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = text.split(" ")[1:] if text else []
        for index, piece in enumerate(pieces):
            finish = "length" if index == len(pieces) - 1 else None
            chunk = {
                "id": request_id,
                "object": kind,
                "created": int(time.time()),
                "model": self.command.served_name,
                "choices": [
                    {
                        "index": 0,
                        "text": " " + piece,
                        "logprobs": None,
                        "finish_reason": finish,
                        "stop_reason": None,
                    }
                ],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class VllmProcess(Process):
    """`vllm serve`: load the model over the profile's load time, then serve until stopped."""

    def __init__(self, ctx: ProcessContext, command: VllmCommand) -> None:
        super().__init__(ctx)
        self.command = command
        self.engine: VllmEngine | None = None

    def _write(self, lines: list[str] | str) -> None:
        self.ctx.log.write("\n".join(lines) if isinstance(lines, list) else lines)

    def _load_seconds(self) -> float:
        simulated = self.ctx.durations.model_load
        slow = self.fault("slow_load")
        if slow is not None:
            simulated *= slow.factor
        return simulated

    def _degradation(self) -> Degradation:
        degrade = self.fault("degrade")
        if degrade is None:
            return Degradation()
        return Degradation(degrade.ttft_factor, degrade.error_rate, degrade.no_pd)

    async def run(self) -> ExitStatus:
        started = asyncio.get_running_loop().time()
        crash = self.fault("crash") or self.fault("oom")
        crash_at = self.ctx.scale.delay(crash.after_seconds) if crash is not None else None
        hang = self.fault("load_hang") is not None
        try:
            outcome = await self._lifecycle(started, crash_at, hang)
        finally:
            self.ctx.registry.clear(self.ctx.pod_ip)
            await self.close_servers()
        if outcome is not None:
            return outcome
        if crash is not None and crash.kind == "oom":
            return ExitStatus(crash.exit_code, "OOMKilled")
        if crash is not None:
            pod_name = str((self.ctx.pod.get("metadata") or {}).get("name", ""))
            self._write(vllm_logs.crash_lines(crash.error, self.command.model, pod_name))
            return ExitStatus(crash.exit_code, "Error")
        return ExitStatus(0, "Completed")

    async def _until(self, started: float, offset: float, crash_at: float | None) -> str:
        """Wait until `offset` wall seconds after start: 'ok', 'stop' or 'crash'."""
        loop = asyncio.get_running_loop()
        target = offset if crash_at is None else min(offset, crash_at)
        remaining = None if math.isinf(target) else started + target - loop.time()
        stopped = await self.wait_stop(remaining)
        if stopped:
            return "stop"
        if crash_at is not None and crash_at <= offset:
            return "crash"
        return "ok"

    async def _lifecycle(
        self, started: float, crash_at: float | None, hang: bool
    ) -> ExitStatus | None:
        """None means the crash fault fired; an ExitStatus ends the run otherwise."""
        command = self.command
        simulated_load = self._load_seconds()
        wall_load = self.ctx.scale.delay(simulated_load)
        self._write(vllm_logs.banner_lines(command.model, command.port, command.args))
        steps = 10
        weights_start, weights_end = 0.10 * wall_load, 0.55 * wall_load
        simulated_weights = 0.45 * simulated_load
        for step in range(steps + 1):
            offset = weights_start + (weights_end - weights_start) * step / steps
            outcome = await self._until(started, offset, crash_at)
            if outcome != "ok":
                return self._ended(outcome)
            done = round(vllm_logs.SHARDS * step / steps)
            self._write(
                vllm_logs.shard_progress_line(
                    done, simulated_weights * step / steps, simulated_weights
                )
            )
            if hang and step == 4:
                # A load that never ends: progress stops and nothing else happens.
                outcome = await self._until(started, float("inf"), crash_at)
                return self._ended(outcome)
        self._write(vllm_logs.weights_loaded_lines(simulated_weights))
        warmup = vllm_logs.warmup_lines()
        for index, line in enumerate(warmup):
            offset = weights_end + (wall_load - weights_end) * (index + 1) / (len(warmup) + 1)
            outcome = await self._until(started, offset, crash_at)
            if outcome != "ok":
                return self._ended(outcome)
            self._write(line)
        outcome = await self._until(started, wall_load, crash_at)
        if outcome != "ok":
            return self._ended(outcome)
        self.engine = VllmEngine(
            command, self.ctx.pod_ip, self._write, self._degradation(),
            lambda: self.ctx.registry.in_flight.get(self.ctx.pod_ip, 0),
        )
        self._write(vllm_logs.server_start_lines(command.port)[:6])
        try:
            await self.serve(self.engine.app(), command.port)
        except OSError as error:
            self._write(f"OSError: [Errno {error.errno}] {error.strerror}")
            return ExitStatus(1, "Error")
        self._write(vllm_logs.server_start_lines(command.port)[6:])
        self.ctx.registry.set_serving(self.ctx.pod_ip, command.served_name)
        outcome = await self._until(started, float("inf"), crash_at)
        return self._ended(outcome)

    def _ended(self, outcome: str) -> ExitStatus | None:
        if outcome == "crash":
            return None
        self._write(["INFO:     Shutting down", "INFO:     Finished server process [1]"])
        return ExitStatus(0, "Completed")
