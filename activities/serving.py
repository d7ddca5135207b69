"""The model-load wait: until vLLM serves on every new pod of a role.

Where it sits: phase 7 (model load) of a rollout, and again for the old version after a
rollback (activities/verification.py then checks, through the gateway, that both roles serve).
The reference pods have no probes, so an LWS turns Available long before the model is loaded:
the model-load wait asks vLLM itself (/health, then /v1/models, through the API server's pod
proxy) on every pod of the role's current revision, follows each pod's vLLM log for the
weight-loading percentage (reported in heartbeats, and "API server up" triggers the probe at
once), and fails the moment a pod shows a failure. It degrades instead of
stalling: heartbeats run on their own clock, a log endpoint that fails leaves the pod status,
events and probes to decide (the progress says what could not be read), and a pod proxy the API
server keeps refusing is PodProxyRefused.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.failures import failure, target_client
from activities.heartbeat import HEARTBEAT_SECONDS, Heartbeater, previous_progress
from activities.waits import LWS_API, first_look, nodes_by_name
from k8s.client import KubeClient, KubeError
from k8s.diagnosis import killed_by_startup_probe, pod_summary
from k8s.informers import FirstLook, Watched, subscribe
from k8s.podfailures import PodFailure, PodFailureCheck
from k8s.probing import ProbeAnswer, probe_vllm
from k8s.readiness import (
    LWS_NAME,
    REVISION_HASH,
    expected_pod_names,
    group_of,
    lws_state,
    pod_ready,
)
from k8s.watching import Collection, LogFollower, Wakeup
from manifests.lws import vllm_port
from spec.activity_io import (
    FailureEvidence,
    ModelLoadInput,
    ModelLoadProgress,
    ModelLoadResult,
    ObjectEvidence,
    ObjectRef,
    PodLoadPhase,
    PodLoadState,
    PodServing,
)
from spec.reasons import FailureReason
from spec.rollout import RoleName
from vllmsignals.loadlog import LoadLog

# Without a log line saying the server is up, probe a running pod this often (real seconds).
PROBE_FALLBACK_SECONDS = 10.0
# How long the first look (one LIST of the role's objects) waits for the probes it started
# before it starts the watches: a serving pod answers in milliseconds.
FIRST_LOOK_PROBE_SECONDS = 5.0
# After the log says the server is up, a probe that fails is retried this soon.
PROBE_RETRY_SECONDS = 1.0
# A silence in weight loading shorter than this share of the budget is never a stall.
STALL_BUDGET_SHARE = 0.01
# A log follow the endpoint refused (kubelet unreachable, broken TLS) is tried again this often;
# meanwhile the wait goes on from the pod status, events and the probes.
LOG_RETRY_SECONDS = 30.0
# Probes in a row the API server refused to proxy (400/403), over at least this long, that make
# PodProxyRefused: a kubelet restarting is refused for a moment, a broken one for good.
PROXY_REFUSALS = 3
PROXY_REFUSED_SECONDS = 15.0
# How often the wait heartbeats, whatever the log streams and probes are doing.
BEAT_SECONDS = 1.0


def vllm_container(role: RoleName) -> str:
    return f"vllm-worker-{role}"


@dataclass
class PodWatch:
    """What the model-load wait knows of one pod (by uid: a recreated pod starts over)."""

    name: str
    log: LoadLog = field(default_factory=LoadLog)
    follower: LogFollower | None = None
    follower_restarts: int = -1
    next_probe: float = 0.0
    probing: bool = False
    probe_task: asyncio.Future[None] | None = None
    probed_after_start: bool = False
    probed_after_ready: bool = False
    models: list[str] | None = None
    probe_detail: str = ""
    # Set while the log endpoint fails for this pod (what it answered), and when to try again.
    log_error: str | None = None
    log_retry_at: float = 0.0
    # Consecutive probes the API server refused to proxy, and its last words.
    refusals: int = 0
    refusal: str = ""
    refused_since: float = 0.0


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


def _detail(watch: PodWatch | None) -> str:
    """The pod's probe result, and what could not be read (the evidence says it, not a stall)."""
    if watch is None:
        return ""
    if watch.log_error and watch.models is None:
        unreadable = f"log unreadable ({watch.log_error[:160]})"
        return f"{watch.probe_detail}; {unreadable}" if watch.probe_detail else unreadable
    return watch.probe_detail


def _container_status(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    for item in (pod.get("status") or {}).get("containerStatuses") or []:
        if item.get("name") == container:
            found: Mapping[str, Any] = item
            return found
    return None


def _phase(pod: Mapping[str, Any], container: str, watch: PodWatch | None) -> PodLoadPhase:
    if watch is not None and watch.models is not None:
        return "serving"
    status = _container_status(pod, container)
    if not (pod.get("spec") or {}).get("nodeName"):
        return "pending"
    if status is None or "running" not in (status.get("state") or {}):
        waiting = ((status or {}).get("state") or {}).get("waiting") or {}
        return "pulling" if waiting.get("reason") in (None, "ContainerCreating") else "starting"
    if watch is not None and watch.log.server_started:
        return "serving-probe"
    if watch is not None and watch.log.percent is not None:
        return "loading"
    return "starting"


class ModelLoadWait:
    """The state and steps of one model-load wait (see the module docstring)."""

    def __init__(self, input: ModelLoadInput, client: KubeClient) -> None:
        spec = input.spec
        self.input = input
        self.spec = spec
        self.client = client
        self.role = input.role
        self.namespace = spec.target.namespace
        self.lws_name = spec.model_service.lws_name(input.role)
        self.port = vllm_port(spec, input.role)
        self.container = vllm_container(input.role)
        self.model = spec.model_service.model_name
        self.budget = spec.budgets.model_load.total_seconds()
        previous = previous_progress(ModelLoadProgress)
        self.started_at = (
            previous.started_at if isinstance(previous, ModelLoadProgress) else datetime.now(UTC)
        )
        self.wakeup = Wakeup()
        self.checker = PodFailureCheck(client, self.namespace)
        self.pods: dict[str, PodWatch] = {}
        self.heartbeater = Heartbeater()
        self.progress = ModelLoadProgress(started_at=self.started_at, role=self.role)
        selector = f"{LWS_NAME}={self.lws_name}"
        # A first look by LIST, then subscriptions to the worker's shared informers
        # (k8s/informers.py) if the roles' pods do not serve yet: every concurrent wait of the
        # process reads one watch per kind and namespace.
        self.lws = FirstLook(
            client,
            Collection(
                LWS_API, "LeaderWorkerSet", self.namespace, None, f"metadata.name={self.lws_name}"
            ),
            self.wakeup.set,
        )
        self.statefulsets = FirstLook(
            client, Collection("apps/v1", "StatefulSet", self.namespace, selector), self.wakeup.set
        )
        self.pod_informer = FirstLook(
            client, Collection("v1", "Pod", self.namespace, selector), self.wakeup.set
        )
        self.nodes = subscribe(client, Collection("v1", "Node"), self.wakeup.set)
        self.required: list[Watched] = [self.lws, self.statefulsets, self.pod_informer]
        # A probe (in the background) the API server refused by RBAC: raised by `run`.
        self.refused: KubeError | None = None

    def stop(self) -> None:
        for informer in [*self.required, self.nodes]:
            informer.stop()
        for watch in self.pods.values():
            if watch.follower is not None:
                watch.follower.stop()
            if watch.probe_task is not None:
                watch.probe_task.cancel()

    async def run(self) -> ModelLoadResult:
        beating = asyncio.ensure_future(self._keep_beating())
        try:
            return await self._wait()
        finally:
            beating.cancel()

    async def _keep_beating(self) -> None:
        """Heartbeat the latest progress on a clock of its own: no log stream, probe or crash-log
        read the wait is blocked on can starve Temporal of heartbeats."""
        while True:
            self.heartbeater.beat(self.progress)
            await asyncio.sleep(BEAT_SECONDS)

    async def _wait(self) -> ModelLoadResult:
        looks = [self.lws, self.statefulsets, self.pod_informer]
        if await first_look(looks):
            result = await self._step()
            probing = [w.probe_task for w in self.pods.values() if w.probe_task is not None]
            if result is None and probing:
                # Pods already Ready are probed in the background; their answers may end the
                # wait on this look (a role with nothing to change), before any watch starts.
                await asyncio.wait(probing, timeout=FIRST_LOOK_PROBE_SECONDS)
                result = await self._step()
            if result is not None:
                return result
        for look in looks:
            look.follow()
        deadline = self.started_at.timestamp() + self.budget
        while True:
            for informer in self.required:
                if informer.error is not None:
                    raise informer.error.about(f"cannot watch {self.lws_name} ({self.role})")
            if self.refused is not None:
                raise self.refused
            if all(i.synced for i in self.required):
                result = await self._step()
                if result is not None:
                    return result
            remaining = deadline - time.time()
            if remaining <= 0:
                raise self._budget_exceeded()
            await self.wakeup.wait(min(remaining, self._next_wakeup()))

    def _next_wakeup(self) -> float:
        """Seconds until the next fallback probe or stall check is due (events come sooner)."""
        now = time.monotonic()
        floor = self.budget * STALL_BUDGET_SHARE
        due = [now + HEARTBEAT_SECONDS]
        for watch in self.pods.values():
            if watch.models is not None:
                continue
            if watch.next_probe:
                due.append(watch.next_probe)
            if watch.log.progress_times:
                due.append(watch.log.progress_times[-1] + watch.log.stall_after(floor) + 0.01)
        return max(0.05, min(due) - now)

    async def _check_pods(self, pods: list[dict[str, Any]]) -> None:
        """Fail on what the pods show; a container the startup probe killed while its weight
        loading had stopped advancing is a stalled load (with the last progress), not a crash."""
        try:
            await self.checker.check(
                pods,
                nodes_by_name(self.nodes),
                {"role": self.role, "progress": self.progress.model_dump(mode="json")},
            )
        except PodFailure as crash:
            raise self._stall_killed(crash) or crash from None

    def _stall_killed(self, crash: PodFailure) -> Exception | None:
        if crash.reason != FailureReason.CRASH_LOOP:
            return None
        if crash.evidence.data.get("exit_code") != 137:
            return None
        if not killed_by_startup_probe(crash.evidence.events):
            return None
        pod = crash.evidence.objects[0].ref.name if crash.evidence.objects else ""
        watch = next((w for w in self.pods.values() if w.name == pod), None)
        if watch is None or watch.log.percent is None or watch.log.percent >= 100:
            return None
        times = watch.log.progress_times
        since = time.monotonic() - times[-1] if times else 0.0
        if since >= watch.log.stall_after(0.0):
            reason = FailureReason.MODEL_LOAD_STALLED
            message = (
                f"{self.role} pod {pod}: weight loading stopped at {watch.log.percent:.0f}% and "
                f"did not advance for {since:.1f}s (its pace was several times faster) until the "
                "startup probe killed the container (exit code 137); the load is hung"
            )
        else:
            # Still advancing when killed: the load needs longer than the startup probe allows.
            reason = FailureReason.MODEL_LOAD_TIMEOUT
            message = (
                f"{self.role} pod {pod}: the startup probe killed the container (exit code 137) "
                f"while weight loading was still advancing ({watch.log.percent:.0f}%): the load "
                "takes longer than the startup probe allows (budgets.modelLoad)"
            )
        found = crash.evidence.model_copy(
            update={
                "reason": reason.value,
                "message": message,
                "log_lines": list(watch.log.tail)[-20:] or crash.evidence.log_lines,
            }
        )
        return failure(reason, message, found)

    async def _step(self) -> ModelLoadResult | None:
        pods = self.pod_informer.objects()
        lws = self.lws.get(f"{self.namespace}/{self.lws_name}")
        state = lws_state(
            lws, self.statefulsets.objects(), pods, self.input.partition, require_pods_ready=False
        )
        # Only the pods of the revision being waited for can fail this wait: after a rollback
        # the bad revision's pods still crash until the controller replaces them (and until it
        # takes up the restored spec, no pod is of the revision waited for).
        await self._check_pods(
            [p for p in pods if state.revision and _labels(p).get(REVISION_HASH) == state.revision]
        )
        expected = set(state.expected_pods) or set(self._expected_names(lws))
        live = {
            str(p["metadata"].get("uid")): p
            for p in pods
            if p["metadata"].get("name") in expected and not p["metadata"].get("deletionTimestamp")
        }
        for uid in [u for u in self.pods if u not in live]:
            gone = self.pods.pop(uid)
            if gone.follower is not None:
                gone.follower.stop()
        for uid, pod in live.items():
            self._track(uid, pod)
        self._record_progress(state.revision, sorted(expected), live)
        self._check_stalls()
        self._check_refusals()
        current = {str(p["metadata"].get("uid")) for p in state.current_pods}
        if state.done and current and all(self._serving(uid) for uid in current):
            return self._result(state.revision, [live[u] for u in current if u in live])
        return None

    def _check_stalls(self) -> None:
        now = time.monotonic()
        floor = self.budget * STALL_BUDGET_SHARE
        for watch in self.pods.values():
            silent = None if watch.models is not None else watch.log.stalled_for(now, floor)
            if silent is None:
                continue
            message = (
                f"{self.role} pod {watch.name}: weight loading stopped at "
                f"{watch.log.percent:.0f}% and has not advanced for {silent:.1f}s (its pace "
                "was several times faster); the load is hung"
            )
            raise failure(
                FailureReason.MODEL_LOAD_STALLED,
                message,
                self._evidence(FailureReason.MODEL_LOAD_STALLED, message, list(watch.log.tail)),
            )

    def _check_refusals(self) -> None:
        """A pod the API server keeps refusing to proxy to cannot be asked whether it serves:
        say so, with the server's words, instead of waiting out the budget."""
        for watch in self.pods.values():
            if watch.models is not None or watch.refusals < PROXY_REFUSALS:
                continue
            if time.monotonic() - watch.refused_since < PROXY_REFUSED_SECONDS:
                continue
            logs = (
                f"; its log could not be read either ({watch.log_error})" if watch.log_error else ""
            )
            message = (
                f"{self.role} pod {watch.name}: the API server refused to proxy to the pod "
                f"{watch.refusals} times in a row ({watch.refusal}), so vLLM's /health and "
                f"/v1/models cannot be read{logs}"
            )
            reason = FailureReason.POD_PROXY_REFUSED
            raise failure(reason, message, self._evidence(reason, message, list(watch.log.tail)))

    def _expected_names(self, lws: Mapping[str, Any] | None) -> list[str]:
        if lws is None:
            return []
        spec = lws.get("spec") or {}
        size = int((spec.get("leaderWorkerTemplate") or {}).get("size", 1))
        return expected_pod_names(
            self.lws_name, int(spec.get("replicas", 1)), size, self.input.partition
        )

    def _serving(self, uid: str) -> bool:
        watch = self.pods.get(uid)
        return watch is not None and watch.models is not None

    def _track(self, uid: str, pod: Mapping[str, Any]) -> None:
        """Follow the pod's log while its vLLM container runs; probe it when it may serve (in
        the background: a slow probe never holds up heartbeats or failure detection)."""
        name = str(pod["metadata"]["name"])
        watch = self.pods.setdefault(uid, PodWatch(name=name))
        status = _container_status(pod, self.container)
        running = status is not None and "running" in (status.get("state") or {})
        if not running:
            return
        restarts = int((status or {}).get("restartCount") or 0)
        self._note_log_error(watch)
        if watch.follower is None or (
            watch.follower.done
            and (
                restarts != watch.follower_restarts
                or (watch.log_error is not None and time.monotonic() >= watch.log_retry_at)
            )
        ):
            watch.follower_restarts = restarts
            watch.follower = LogFollower(
                self.client,
                self.namespace,
                name,
                self.container,
                functools.partial(self._on_line, watch),
                self.wakeup.set,
            ).start()
            if not watch.next_probe:
                watch.next_probe = time.monotonic() + PROBE_FALLBACK_SECONDS
        if watch.models is not None or watch.probing or not self._probe_due(watch, pod):
            return
        watch.probing = True
        watch.probe_task = asyncio.ensure_future(self._probe(watch, pod_ready(pod)))

    @staticmethod
    def _note_log_error(watch: PodWatch) -> None:
        """Record a log follow the endpoint refused (the waiter carries on without it)."""
        follower = watch.follower
        if follower is None or not follower.done or follower.error is None:
            return
        if watch.log_error != follower.error:
            watch.log_error = follower.error
            watch.log_retry_at = time.monotonic() + LOG_RETRY_SECONDS

    @staticmethod
    def _probe_due(watch: PodWatch, pod: Mapping[str, Any]) -> bool:
        """Probe when the log says the server is up, when the pod turns Ready (a startup probe
        on /health passed), or when the fallback timer is due; never on every event."""
        if watch.log.server_started and not watch.probed_after_start:
            return True
        if pod_ready(pod) and not watch.probed_after_ready:
            return True
        return bool(watch.next_probe) and time.monotonic() >= watch.next_probe

    def _on_line(self, watch: PodWatch, line: str) -> None:
        if watch.log.feed(line):
            self.wakeup.set()

    async def _probe(self, watch: PodWatch, ready: bool) -> None:
        started = watch.log.server_started
        try:
            answer: ProbeAnswer = await asyncio.to_thread(
                probe_vllm, self.client, self.namespace, watch.name, self.port, self.model
            )
        except KubeError as error:
            # A proxy refused by RBAC is a missing rule, not a pod that is not ready yet.
            self.refused = error
            return
        finally:
            watch.probing = False
            self.wakeup.set()
        models = answer.models
        watch.probed_after_start = watch.probed_after_start or started
        watch.probed_after_ready = watch.probed_after_ready or ready
        watch.probe_detail = answer.detail
        watch.refusals = watch.refusals + 1 if answer.refused else 0
        if watch.refusals == 1:
            watch.refused_since = time.monotonic()
        watch.refusal = answer.refused or watch.refusal
        retry = PROBE_RETRY_SECONDS if started else PROBE_FALLBACK_SECONDS
        watch.next_probe = time.monotonic() + retry
        if models is not None and self.model in models:
            watch.models = models
            if watch.follower is not None:
                watch.follower.stop()

    def _record_progress(
        self, revision: str | None, expected: list[str], live: Mapping[str, Mapping[str, Any]]
    ) -> None:
        states = []
        for uid, pod in sorted(live.items(), key=lambda item: str(item[1]["metadata"]["name"])):
            watch = self.pods.get(uid)
            states.append(
                PodLoadState(
                    name=str(pod["metadata"]["name"]),
                    group=group_of(pod),
                    node=(pod.get("spec") or {}).get("nodeName"),
                    revision_hash=(pod["metadata"].get("labels") or {}).get(REVISION_HASH),
                    image=_container_image(pod, self.container),
                    phase=_phase(pod, self.container, watch),
                    weights_percent=watch.log.percent if watch else None,
                    detail=_detail(watch),
                )
            )
        self.progress = ModelLoadProgress(
            started_at=self.started_at,
            role=self.role,
            revision_hash=revision,
            pods=states,
            serving=sum(1 for s in states if s.phase == "serving"),
            expected=len(expected),
        )

    def _result(self, revision: str | None, pods: list[Mapping[str, Any]]) -> ModelLoadResult:
        serving = []
        for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
            watch = self.pods[str(pod["metadata"]["uid"])]
            serving.append(
                PodServing(
                    name=watch.name,
                    group=group_of(pod),
                    node=(pod.get("spec") or {}).get("nodeName"),
                    port=self.port,
                    models=watch.models or [],
                )
            )
        return ModelLoadResult(
            role=self.role,
            revision_hash=revision,
            pods=serving,
            elapsed_seconds=time.time() - self.started_at.timestamp(),
            api_requests=self.client.requests,
        )

    def _budget_exceeded(self) -> Exception:
        lagging = [w for w in self.pods.values() if w.models is None]
        message = (
            f"{self.role} did not serve within the model-load budget "
            f"({self.budget:.0f}s, budgets.modelLoad): {self.progress.summary()}"
        )
        tail = list(lagging[0].log.tail) if lagging else []
        reason = FailureReason.MODEL_LOAD_TIMEOUT
        unreadable = [w for w in lagging if w.log_error is not None and w.log.percent is None]
        if unreadable:
            # Without the log the load's progress is unknown: name the endpoint that failed.
            reason = FailureReason.LOG_ENDPOINT_UNAVAILABLE
            message += (
                f"; the log endpoint of {', '.join(w.name for w in unreadable)} could not be "
                f"read ({unreadable[0].log_error}), so how far the load got is unknown"
            )
        return failure(reason, message, self._evidence(reason, message, tail))

    def _evidence(
        self, reason: FailureReason, message: str, log_lines: list[str]
    ) -> FailureEvidence:
        return FailureEvidence(
            reason=reason.value,
            message=message,
            objects=[
                ObjectEvidence(
                    ref=ObjectRef.of({"apiVersion": "v1", "kind": "Pod", **p}),
                    status=pod_summary(p),
                )
                for p in self.pod_informer.objects()
            ],
            log_lines=log_lines[-20:],
            data={"progress": self.progress.model_dump(mode="json")},
        )


@activity.defn
async def wait_for_model_load(input: ModelLoadInput) -> ModelLoadResult:
    """Wait until vLLM serves the model on every pod of the role's current revision."""
    async with target_client(input.spec.target) as client:
        wait = ModelLoadWait(input, client)
        try:
            return await wait.run()
        finally:
            wait.stop()


def _container_image(pod: Mapping[str, Any], container: str) -> str | None:
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") == container:
            return str(spec.get("image") or "") or None
    return None
