"""Wait activities: a LeaderWorkerSet rollout, a Deployment, a Gateway, an HTTPRoute.

Where it sits: called by the workflows after an apply or a Helm release (phases 3, 5, 6 and
rollback). Each wait takes a first look by LIST and, unless that ends it, watches (the
worker's shared informers, k8s/informers.py) and re-evaluates on every event: it finishes the
moment the object is ready, fails the moment a pod shows a failure (with the reason and
evidence from k8s/podfailures.py) or the object reports a state waiting cannot fix, and
otherwise fails when its own budget (`timeout`, counted from the first attempt: a retry
resumes from the heartbeat) is spent.

The Gateway wait also watches the GatewayClass its Gateway names while the Gateway is not
Accepted (k8s/gateway_class.py decides): a class still missing after
`GATEWAY_CLASS_GRACE_SECONDS` fails the wait at once (InvalidSpec, naming the class and the spec
field), where it used to end GatewayNotProgrammed at the budget's end.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.failures import failure, object_evidence, target_client
from activities.heartbeat import HEARTBEAT_SECONDS, Heartbeater, previous_progress, run_blocking
from k8s.client import KubeClient
from k8s.gateway_class import gateway_class_state, referenced_class
from k8s.informers import FirstLook, Watched, look_at_all, subscribe
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
from k8s.watching import Collection, Wakeup, object_key
from spec.activity_io import (
    FailureEvidence,
    ObjectRef,
    WaitForLwsInput,
    WaitForObjectInput,
    WaitProgress,
    WaitResult,
)
from spec.reasons import FailureReason
from spec.validation import INFRA_GATEWAY_CLASS_FIELD

LWS_API = "leaderworkerset.x-k8s.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
# How long the GatewayClass a Gateway names may be missing before the Gateway wait fails:
# istiod and kgateway register their class a few seconds after they start, so a class missing
# right after the provider's install may still come; one missing for a minute will not. Real
# seconds (a controller's start-up does not run on a simulated clock), counted by each attempt
# from when it first saw the class missing, and checked on every event and heartbeat (5 s).
GATEWAY_CLASS_GRACE_SECONDS = 60.0


def started_at() -> datetime:
    """When this wait began: the first attempt's time when a retry resumes, else now."""
    previous = previous_progress(WaitProgress)
    if isinstance(previous, WaitProgress):
        return previous.started_at
    return datetime.now(UTC)


async def first_look(looks: list[FirstLook]) -> bool:
    """One LIST of each view, on a thread (heartbeating); False when there is none or any
    failed: the wait then follows its views without having evaluated a first look."""
    return bool(looks) and await run_blocking(functools.partial(look_at_all, looks), "first look")


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
        # Namespaced views still on their first look (a LIST); followed once the wait waits.
        self._first_looks: list[FirstLook] = []
        self._following = False

    def watch(self, collection: Collection, required: bool = True) -> Watched:
        """This wait's view of `collection`, filtered to its selectors: the worker's shared
        informer, after a first look by LIST for a namespaced collection (k8s FirstLook); the
        cluster-wide ones (nodes, classes) are shared by every wait, hence watched at once."""
        informer: Watched
        if collection.namespace is None or self._following:
            informer = subscribe(self.client, collection, self.wakeup.set)
        else:
            first_look = FirstLook(self.client, collection, self.wakeup.set)
            self._first_looks.append(first_look)
            informer = first_look
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
        """Evaluate once on a first look at the namespaced collections; when that is not
        enough, follow them and evaluate again on every change until done, failed or out of
        time."""
        if await first_look(list(self._first_looks)):
            readiness = await self._evaluate(evaluate, on_timeout)
            if readiness is not None and readiness.done:
                return self._result(readiness.detail)
        self._following = True
        for look in self._first_looks:
            look.follow()
        deadline = self.started_at.timestamp() + self.timeout_seconds
        detail = "waiting for the first list"
        while True:
            readiness = await self._evaluate(evaluate, on_timeout)
            if readiness is not None:
                detail = readiness.detail
                if readiness.done:
                    return self._result(detail)
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

    async def _evaluate(
        self,
        evaluate: Callable[[], Awaitable[Readiness]],
        on_timeout: Callable[[str], FailureEvidence],
    ) -> Readiness | None:
        """`evaluate()` once every required view is synced (None before); a view refused, or
        a readiness that reports a failure, ends the wait."""
        for informer in self.informers:
            if informer.error is not None:
                raise informer.error.about(f"cannot watch {self.ref}")
        if not all(i.synced for i in self.informers):
            return None
        readiness = await evaluate()
        if readiness.failure:
            evidence = on_timeout(readiness.failure)
            raise failure(self.timeout_reason, readiness.failure, evidence)
        return readiness

    def _result(self, detail: str) -> WaitResult:
        return WaitResult(
            ref=self.ref,
            detail=detail,
            elapsed_seconds=time.time() - self.started_at.timestamp(),
            api_requests=self.client.requests,
        )


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


class GatewayClassCheck:
    """The Gateway wait's look at the GatewayClass its Gateway names: watched (all classes, so
    a failure can list what exists) from the first evaluation that finds the Gateway not
    Accepted; a 403 on it fails the wait as PermissionDenied, like any watch of the loop."""

    def __init__(self, loop: WaitLoop) -> None:
        self.loop = loop
        self.classes: Watched | None = None
        self.name: str | None = None
        self.missing_since: float | None = None

    def refine(self, gateway: Mapping[str, Any] | None, readiness: Readiness) -> Readiness:
        """`readiness` of the Gateway, with the class's state in its detail; raises InvalidSpec
        when the class has been missing past the grace period."""
        name = referenced_class(gateway)
        if readiness.done or readiness.failure is not None or name is None:
            return readiness
        if self.classes is None:
            self.classes = self.loop.watch(Collection(GATEWAY_API, "GatewayClass"))
        if not self.classes.synced:
            return readiness
        self.name = name
        found = self.classes.get(name)
        now = time.monotonic()
        if found is not None:
            self.missing_since = None
        elif self.missing_since is None:
            self.missing_since = now
        state = gateway_class_state(
            name,
            found,
            0.0 if self.missing_since is None else now - self.missing_since,
            GATEWAY_CLASS_GRACE_SECONDS,
            [object_key(c) for c in self.classes.objects()],
            INFRA_GATEWAY_CLASS_FIELD,
        )
        if state.failure is not None:
            evidence = _evidence(FailureReason.INVALID_SPEC, state.failure, [gateway])
            raise failure(
                FailureReason.INVALID_SPEC,
                state.failure,
                evidence.model_copy(
                    update={"data": {"gatewayClass": name, "field": INFRA_GATEWAY_CLASS_FIELD}}
                ),
            )
        return Readiness(False, f"{readiness.detail}; {state.detail}")

    def evidence(self) -> list[Mapping[str, Any] | None]:
        """The class last looked at (its status holds the conditions its controller set)."""
        if self.classes is None or self.name is None:
            return []
        return [self.classes.get(self.name)]


async def _wait_for_condition(
    input: WaitForObjectInput,
    kind: str,
    reason: FailureReason,
    readiness: Callable[[Mapping[str, Any] | None], Readiness],
    check_class: bool = False,
) -> WaitResult:
    namespace = input.namespace or input.target.namespace
    ref = ObjectRef(api_version=GATEWAY_API, kind=kind, name=input.name, namespace=namespace)
    async with target_client(input.target) as client:
        with WaitLoop(client, ref, reason, input.timeout.total_seconds()) as loop:
            watched = loop.watch(
                Collection(GATEWAY_API, kind, namespace, None, f"metadata.name={input.name}")
            )
            gateway_class = GatewayClassCheck(loop) if check_class else None

            async def evaluate() -> Readiness:
                current = watched.get(f"{namespace}/{input.name}")
                found = readiness(current)
                return found if gateway_class is None else gateway_class.refine(current, found)

            def on_timeout(message: str) -> FailureEvidence:
                objects: list[Mapping[str, Any] | None] = [
                    watched.get(f"{namespace}/{input.name}")
                ]
                if gateway_class is not None:
                    objects += gateway_class.evidence()
                return _evidence(reason, message, objects)

            return await loop.run(evaluate, on_timeout)


@activity.defn
async def wait_for_gateway(input: WaitForObjectInput) -> WaitResult:
    """Wait until a Gateway is Programmed (its data plane serves); fail early when the
    GatewayClass it names does not exist (see GatewayClassCheck)."""
    return await _wait_for_condition(
        input,
        "Gateway",
        FailureReason.GATEWAY_NOT_PROGRAMMED,
        gateway_readiness,
        check_class=True,
    )


@activity.defn
async def wait_for_route(input: WaitForObjectInput) -> WaitResult:
    """Wait until an HTTPRoute is Accepted with ResolvedRefs by every parent Gateway."""
    return await _wait_for_condition(
        input, "HTTPRoute", FailureReason.ROUTE_NOT_ACCEPTED, route_readiness
    )
