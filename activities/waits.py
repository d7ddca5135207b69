"""Wait activities: a LeaderWorkerSet rollout, a Deployment, a Gateway, an HTTPRoute.

Where it sits: called by the workflows after an apply or a Helm release (phases 3, 5, 6 and
rollback). Each wait watches (informers from k8s/watching.py) and re-evaluates on every
event: it finishes the moment the object is ready, fails the moment a pod shows a failure (with
the reason and evidence from k8s/podfailures.py) or the object reports a state waiting
cannot fix, and otherwise fails when its own budget (`timeout`, counted from the first attempt:
a retry resumes from the heartbeat) is spent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.failures import failure, object_evidence, target_client
from activities.heartbeat import HEARTBEAT_SECONDS, Heartbeater, previous_progress
from k8s.client import KubeClient
from k8s.informers import Watched, subscribe
from k8s.podfailures import PodFailureCheck
from k8s.readiness import (
    LWS_NAME,
    Readiness,
    deployment_readiness,
    gateway_readiness,
    lws_state,
    on_revision,
    route_readiness,
)
from k8s.watching import Collection, Wakeup
from spec.activity_io import (
    FailureEvidence,
    ObjectRef,
    WaitForLwsInput,
    WaitForObjectInput,
    WaitProgress,
    WaitResult,
)
from spec.reasons import FailureReason

LWS_API = "leaderworkerset.x-k8s.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"


def started_at() -> datetime:
    """When this wait began: the first attempt's time when a retry resumes, else now."""
    previous = previous_progress(WaitProgress)
    if isinstance(previous, WaitProgress):
        return previous.started_at
    return datetime.now(UTC)


def nodes_by_name(informer: Watched | None) -> dict[str, Mapping[str, Any]] | None:
    """The nodes, when the worker may read them (a namespaced role may not: then None)."""
    if informer is None or informer.error is not None or not informer.synced:
        return None
    return {str(n["metadata"]["name"]): n for n in informer.objects()}


class WaitLoop:
    """Re-evaluate on every change of the informers until done, failed or out of time."""

    def __init__(
        self,
        client: KubeClient,
        ref: ObjectRef,
        timeout_reason: FailureReason,
        timeout_seconds: float,
    ) -> None:
        self.client = client
        self.ref = ref
        self.timeout_reason = timeout_reason
        self.timeout_seconds = timeout_seconds
        self.wakeup = Wakeup()
        self.informers: list[Watched] = []
        self._optional: list[Watched] = []
        self.started_at = started_at()
        self.heartbeater = Heartbeater()
        self._attempt_started = time.monotonic()

    def watch(self, collection: Collection, required: bool = True) -> Watched:
        # The worker's shared informer for the collection, filtered to this wait's selectors.
        informer = subscribe(self.client, collection, self.wakeup.set)
        if required:
            self.informers.append(informer)
        else:
            self._optional.append(informer)
        return informer

    def __enter__(self) -> WaitLoop:
        return self

    def __exit__(self, *_: object) -> None:
        for informer in self.informers + self._optional:
            informer.stop()

    async def run(
        self,
        evaluate: Callable[[], Awaitable[Readiness]],
        on_timeout: Callable[[str], FailureEvidence],
    ) -> WaitResult:
        deadline = self.started_at.timestamp() + self.timeout_seconds
        detail = "waiting for the first list"
        while True:
            for informer in self.informers:
                if informer.error is not None:
                    raise informer.error.about(f"cannot watch {self.ref}")
            if all(i.synced for i in self.informers):
                readiness = await evaluate()
                detail = readiness.detail
                if readiness.failure:
                    evidence = on_timeout(readiness.failure)
                    raise failure(self.timeout_reason, readiness.failure, evidence)
                if readiness.done:
                    return WaitResult(
                        ref=self.ref,
                        detail=detail,
                        elapsed_seconds=time.time() - self.started_at.timestamp(),
                        api_requests=self.client.requests,
                    )
            self.heartbeater.beat(
                WaitProgress(
                    started_at=self.started_at,
                    resource_version=self.informers[0].resource_version,
                    detail=detail,
                )
            )
            remaining = deadline - time.time()
            if remaining <= 0:
                message = (
                    f"{self.ref} not ready within {self.timeout_seconds:.0f}s; last seen: {detail}"
                )
                raise failure(self.timeout_reason, message, on_timeout(message))
            await self.wakeup.wait(min(remaining, HEARTBEAT_SECONDS))


def _evidence(
    reason: FailureReason, message: str, objects: list[Mapping[str, Any] | None]
) -> FailureEvidence:
    return FailureEvidence(
        reason=reason.value,
        message=message,
        objects=[object_evidence(o) for o in objects if o is not None],
    )


@activity.defn
async def wait_for_lws_rollout(input: WaitForLwsInput) -> WaitResult:
    """Wait until a LeaderWorkerSet's groups >= partition are updated and ready."""
    namespace = input.namespace or input.target.namespace
    ref = ObjectRef(
        api_version=LWS_API, kind="LeaderWorkerSet", name=input.name, namespace=namespace
    )
    async with target_client(input.target) as client:
        checker = PodFailureCheck(client, namespace)
        with WaitLoop(
            client, ref, FailureReason.ROLLOUT_TIMEOUT, input.timeout.total_seconds()
        ) as loop:
            lws = loop.watch(
                Collection(
                    LWS_API, "LeaderWorkerSet", namespace, None, f"metadata.name={input.name}"
                )
            )
            selector = f"{LWS_NAME}={input.name}"
            statefulsets = loop.watch(Collection("apps/v1", "StatefulSet", namespace, selector))
            pods = loop.watch(Collection("v1", "Pod", namespace, selector))
            nodes = loop.watch(Collection("v1", "Node"), required=False)

            async def evaluate() -> Readiness:
                current_pods = pods.objects()
                state = lws_state(
                    lws.get(f"{namespace}/{input.name}"),
                    statefulsets.objects(),
                    current_pods,
                    input.partition,
                )
                await checker.check(
                    on_revision(current_pods, state.revision), nodes_by_name(nodes),
                    {"lws": input.name},
                )
                return Readiness(state.done, state.detail)

            def on_timeout(message: str) -> FailureEvidence:
                found = _evidence(
                    FailureReason.ROLLOUT_TIMEOUT,
                    message,
                    [lws.get(f"{namespace}/{input.name}"), *pods.objects()],
                )
                return found

            return await loop.run(evaluate, on_timeout)


@activity.defn
async def wait_for_deployment(input: WaitForObjectInput) -> WaitResult:
    """Wait until a Deployment is Available with every replica updated."""
    namespace = input.namespace or input.target.namespace
    ref = ObjectRef(api_version="apps/v1", kind="Deployment", name=input.name, namespace=namespace)
    async with target_client(input.target) as client:
        checker = PodFailureCheck(client, namespace)
        with WaitLoop(
            client, ref, FailureReason.ROLLOUT_TIMEOUT, input.timeout.total_seconds()
        ) as loop:
            deployment = loop.watch(
                Collection("apps/v1", "Deployment", namespace, None, f"metadata.name={input.name}")
            )
            pods: list[Watched] = []

            async def evaluate() -> Readiness:
                current = deployment.get(f"{namespace}/{input.name}")
                if current is not None and not pods:
                    labels = ((current.get("spec") or {}).get("selector") or {}).get(
                        "matchLabels"
                    ) or {}
                    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                    if selector:
                        pods.append(loop.watch(Collection("v1", "Pod", namespace, selector), False))
                if pods and pods[0].synced:
                    await checker.check(pods[0].objects(), None, {"deployment": input.name})
                return deployment_readiness(current)

            def on_timeout(message: str) -> FailureEvidence:
                return _evidence(
                    FailureReason.ROLLOUT_TIMEOUT,
                    message,
                    [
                        deployment.get(f"{namespace}/{input.name}"),
                        *(pods[0].objects() if pods else []),
                    ],
                )

            return await loop.run(evaluate, on_timeout)


async def _wait_for_condition(
    input: WaitForObjectInput,
    kind: str,
    reason: FailureReason,
    readiness: Callable[[Mapping[str, Any] | None], Readiness],
) -> WaitResult:
    namespace = input.namespace or input.target.namespace
    ref = ObjectRef(api_version=GATEWAY_API, kind=kind, name=input.name, namespace=namespace)
    async with target_client(input.target) as client:
        with WaitLoop(client, ref, reason, input.timeout.total_seconds()) as loop:
            watched = loop.watch(
                Collection(GATEWAY_API, kind, namespace, None, f"metadata.name={input.name}")
            )

            async def evaluate() -> Readiness:
                return readiness(watched.get(f"{namespace}/{input.name}"))

            def on_timeout(message: str) -> FailureEvidence:
                return _evidence(reason, message, [watched.get(f"{namespace}/{input.name}")])

            return await loop.run(evaluate, on_timeout)


@activity.defn
async def wait_for_gateway(input: WaitForObjectInput) -> WaitResult:
    """Wait until a Gateway is Programmed (its data plane serves)."""
    return await _wait_for_condition(
        input, "Gateway", FailureReason.GATEWAY_NOT_PROGRAMMED, gateway_readiness
    )


@activity.defn
async def wait_for_route(input: WaitForObjectInput) -> WaitResult:
    """Wait until an HTTPRoute is Accepted with ResolvedRefs by every parent Gateway."""
    return await _wait_for_condition(
        input, "HTTPRoute", FailureReason.ROUTE_NOT_ACCEPTED, route_readiness
    )
