"""The analysis activity: watch a role's updated pods against its other pods for one window.

Where it sits: the workflow runs it after a partition step (or a whole role) whose spec asks for
an `analysis` gate (workflows/analysis.py) and decides on the verdict; the judgement itself is
pure (vllmsignals/analysis.py). Steps:

1. Group the role's running pods: canary = the LeaderWorkerSet's update revision (the leader
   StatefulSet's template-revision-hash label, as the LWS controller sets it), stable = the rest.
2. Read each pod's metrics at the start of the window: `/metrics` through the API server's pod
   proxy (the direct source), or nothing when a Prometheus server is asked at the end.
3. For the window, either wait (live traffic) or send the spec's bounded synthetic load through
   the gateway: completions at `requestsPerSecond`, never more than `maxRequests`, never past the
   window.
4. Read again (or query Prometheus' increases over the window), take each pod's delta, sum per
   group and judge. The verdict is returned, not raised: what an inconclusive window leads to is
   the workflow's decision (retry, fail, approval).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from temporalio import activity

from activities.failures import target_client
from activities.heartbeat import HEARTBEAT_SECONDS, heartbeat_step
from k8s.client import KubeClient
from k8s.gateway import Gateway
from k8s.readiness import REVISION_HASH
from manifests.labels import role_labels
from manifests.lws import vllm_port
from spec.activity_io import ObjectRef
from spec.analysis import SyntheticLoad
from spec.analysis_io import AnalysisInput, AnalysisResult
from spec.rollout import RoleName, RolloutSpec
from vllmsignals.analysis import Group, PodSignals, combine, judge, parse_signals
from vllmsignals.prometheus import PrometheusQuery

# The prompt of a synthetic request: words the fake and real tokenizers both count as tokens.
_PROMPT_WORDS = ("rollout", "analysis", "of", "the", "canary", "pods", "against", "stable")


@dataclass(frozen=True)
class RolePods:
    canary: list[str]
    stable: list[str]
    revision: str | None


def role_pods(client: KubeClient, spec: RolloutSpec, role: RoleName) -> RolePods:
    """The role's running pods split by the LWS update revision (all canary without one)."""
    namespace = spec.target.namespace
    leader = client.get(
        ObjectRef(
            api_version="apps/v1", kind="StatefulSet", namespace=namespace,
            name=spec.model_service.lws_name(role),
        )
    )
    revision = ((leader or {}).get("metadata") or {}).get("labels", {}).get(REVISION_HASH)
    selector = ",".join(f"{k}={v}" for k, v in role_labels(spec, role).items())
    pods, _ = client.list_objects("v1", "Pod", namespace, selector)
    canary: list[str] = []
    stable: list[str] = []
    for pod in pods:
        metadata = pod["metadata"]
        if metadata.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") != "Running":
            continue
        labels = metadata.get("labels") or {}
        updated = revision is None or labels.get(REVISION_HASH) == revision
        (canary if updated else stable).append(str(metadata["name"]))
    return RolePods(sorted(canary), sorted(stable), revision)


class DirectSource:
    """Each pod's /metrics through the API server's pod proxy, at both ends of the window."""

    name = "direct"

    def __init__(self, client: KubeClient, spec: RolloutSpec, role: RoleName) -> None:
        self._client = client
        self._namespace = spec.target.namespace
        self._port = vllm_port(spec, role)
        self._start: dict[str, PodSignals] = {}

    def _read(self, pods: list[str]) -> dict[str, PodSignals]:
        found: dict[str, PodSignals] = {}
        for pod in pods:
            status, body = self._client.pod_proxy(self._namespace, pod, self._port, "/metrics")
            if status == 200:
                found[pod] = parse_signals(body.decode(errors="replace"))
        return found

    def start(self, pods: list[str]) -> None:
        self._start = self._read(pods)

    def finish(self, pods: list[str], window_seconds: float) -> dict[str, PodSignals]:
        end = self._read(pods)
        return {pod: end[pod].since(self._start[pod]) for pod in end if pod in self._start}


class PrometheusSource:
    """A Prometheus server's increases over the window, per pod (nothing read at the start)."""

    name = "prometheus"

    def __init__(self, query: PrometheusQuery) -> None:
        self._query = query

    def start(self, pods: list[str]) -> None:
        return None

    def finish(self, pods: list[str], window_seconds: float) -> dict[str, PodSignals]:
        return self._query.window_signals(pods, window_seconds)


@dataclass
class LoadTally:
    sent: int = 0
    failed: int = 0


def drive_load(
    gateway: Gateway, model: str, load: SyntheticLoad, seconds: float, stop: threading.Event
) -> LoadTally:
    """Completions through the gateway at the spec's rate, bounded by count and by `seconds`."""
    tally = LoadTally()
    started = time.monotonic()
    interval = 1.0 / load.requests_per_second
    words = [_PROMPT_WORDS[i % len(_PROMPT_WORDS)] for i in range(max(0, load.prompt_tokens - 1))]
    while tally.sent < load.max_requests and not stop.is_set():
        due = started + tally.sent * interval
        now = time.monotonic()
        if due >= started + seconds:
            break
        if due > now and stop.wait(due - now):
            break
        # A distinct first word per request: no prefix cache turns the load into cache hits.
        prompt = " ".join([f"r{tally.sent}", *words])
        status, _ = gateway.call(
            "POST", "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": load.max_tokens},
        )
        tally.sent += 1
        if status != 200:
            tally.failed += 1
    remaining = started + seconds - time.monotonic()
    if remaining > 0:
        stop.wait(remaining)
    return tally


def source_for(client: KubeClient, input: AnalysisInput) -> DirectSource | PrometheusSource:
    prometheus = input.analysis.prometheus
    if prometheus is None:
        return DirectSource(client, input.spec, input.role)
    return PrometheusSource(PrometheusQuery(prometheus, input.spec.target.namespace))


def analyse_sync(client: KubeClient, input: AnalysisInput, stop: threading.Event) -> AnalysisResult:
    spec, analysis = input.spec, input.analysis
    pods = role_pods(client, spec, input.role)
    everyone = pods.canary + pods.stable
    source = source_for(client, input)
    source.start(everyone)
    seconds = analysis.window.total_seconds()
    started = time.monotonic()
    tally = LoadTally()
    if analysis.load is not None:
        gateway = Gateway(spec, client)
        tally = drive_load(gateway, spec.model_service.model_name, analysis.load, seconds, stop)
    else:
        stop.wait(seconds)
    windows = source.finish(everyone, time.monotonic() - started)

    def group(names: list[str]) -> Group:
        return Group(names, combine(windows[n] for n in names if n in windows))

    return judge(
        analysis, input.role, group(pods.canary), group(pods.stable) if pods.stable else None,
        window_seconds=round(time.monotonic() - started, 3), source=source.name,
        load_requests=tally.sent, load_failures=tally.failed,
    )


@activity.defn
async def analyze_canary(input: AnalysisInput) -> AnalysisResult:
    """Compare the role's updated pods with its other pods over the spec's window; the verdict
    (pass, fail, inconclusive) with its numbers."""
    stop = threading.Event()
    step = f"analysing {input.step} for {input.analysis.window.total_seconds():g}s"
    async with target_client(input.spec.target) as client:
        task = asyncio.ensure_future(asyncio.to_thread(analyse_sync, client, input, stop))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
                heartbeat_step(step)
        except asyncio.CancelledError:
            # The window and the load stop with the activity (an abort, a rollback).
            stop.set()
            await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
            raise
        return task.result()

