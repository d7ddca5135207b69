"""When is an object "done": LeaderWorkerSet rollouts, Deployments, Gateways and HTTPRoutes.

Where it sits: pure functions the waits in activities/kube.py and activities/serving.py evaluate
on every watch event, over the objects their informers cache. Each returns whether the object is
ready, a one-line detail for heartbeats and messages, and (for Gateways and routes) a failure
that cannot heal by waiting.

LeaderWorkerSet v0.7.0 publishes no observedGeneration, so "the controller has seen the current
spec" is read from the leader StatefulSet it writes: its pod template must already hold every
field of the LWS template, and its template-revision-hash label names the revision every updated
pod must carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k8s.capacity import template_changed

LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
REVISION_HASH = "leaderworkerset.sigs.k8s.io/template-revision-hash"
GROUP_INDEX = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"


def condition(obj: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            found: Mapping[str, Any] = item
            return found
    return None


def is_true(obj: Mapping[str, Any] | None, kind: str) -> bool:
    found = condition(obj, kind)
    return found is not None and found.get("status") == "True"


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return is_true(pod, "Ready")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _generation_seen(obj: Mapping[str, Any]) -> bool | None:
    """observedGeneration >= generation, when the object or its conditions publish it."""
    generation = (obj.get("metadata") or {}).get("generation")
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None:
        observed_values = [
            c["observedGeneration"]
            for c in status.get("conditions") or []
            if c.get("observedGeneration") is not None
        ]
        observed = min(observed_values) if observed_values else None
    if generation is None or observed is None:
        return None
    return int(observed) >= int(generation)


@dataclass(frozen=True)
class LwsState:
    """How far a LeaderWorkerSet's rollout is, for the groups at index >= partition."""

    done: bool
    detail: str
    revision: str | None
    expected_pods: list[str] = field(default_factory=list)
    current_pods: list[Mapping[str, Any]] = field(default_factory=list)


def expected_pod_names(name: str, replicas: int, size: int, partition: int) -> list[str]:
    """The pods the groups >= partition consist of, named as the LWS controller names them."""
    names = []
    for group in range(min(partition, replicas), replicas):
        names.append(f"{name}-{group}")
        names += [f"{name}-{group}-{index}" for index in range(1, size)]
    return names


def lws_state(
    lws: Mapping[str, Any] | None,
    statefulsets: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    partition: int = 0,
    require_pods_ready: bool = True,
) -> LwsState:
    if lws is None:
        return LwsState(False, "the LeaderWorkerSet does not exist (yet)", None)
    name = _name(lws)
    spec = lws.get("spec") or {}
    status = lws.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    template = spec.get("leaderWorkerTemplate") or {}
    size = int(template.get("size", 1))
    leader = next((s for s in statefulsets if _name(s) == name), None)
    if leader is None:
        return LwsState(False, f"{name}: waiting for the controller to create its groups", None)
    leader_template = template.get("leaderTemplate") or template.get("workerTemplate") or {}
    seen = _generation_seen(lws)
    if seen is None:
        sts_template = ((leader.get("spec") or {}).get("template") or {}).get("spec")
        seen = not template_changed(leader_template.get("spec") or {}, sts_template or {})
    revision = ((leader.get("metadata") or {}).get("labels") or {}).get(REVISION_HASH)
    if not seen or revision is None:
        return LwsState(False, f"{name}: the controller has not taken up the new spec yet", None)
    expected = expected_pod_names(name, replicas, size, partition)
    by_name = {_name(p): p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")}
    current = [
        by_name[n]
        for n in expected
        if n in by_name and _labels(by_name[n]).get(REVISION_HASH) == revision
    ]
    ready = [p for p in current if pod_ready(p)]
    updated = int(status.get("updatedReplicas") or 0)
    ready_groups = int(status.get("readyReplicas") or 0)
    want_updated = max(0, replicas - partition)
    available = is_true(lws, "Available")
    detail = (
        f"{name}: {updated}/{want_updated} groups updated, {ready_groups}/{replicas} ready, "
        f"{len(current)}/{len(expected)} pods on revision {revision}"
        + (f" ({len(ready)} Ready)" if require_pods_ready else "")
        + ("" if available else ", not Available")
    )
    done = (
        updated >= want_updated
        and ready_groups >= replicas
        and available
        and len(current) == len(expected)
        and (len(ready) == len(expected) or not require_pods_ready)
    )
    return LwsState(done, detail, revision, expected, current)


def on_revision(
    pods: Iterable[Mapping[str, Any]], revision: str | None
) -> list[Mapping[str, Any]]:
    """The pods of `revision` (none while the controller has not named it). Only these can
    fail a wait for it: during a rollback the pods of the revision being undone keep crashing
    until the controller replaces them, and that is no failure of the revision restored."""
    if revision is None:
        return []
    return [p for p in pods if _labels(p).get(REVISION_HASH) == revision]


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


@dataclass(frozen=True)
class Readiness:
    done: bool
    detail: str
    failure: str | None = None


def deployment_readiness(deployment: Mapping[str, Any] | None) -> Readiness:
    if deployment is None:
        return Readiness(False, "the Deployment does not exist (yet)")
    name = _name(deployment)
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    detail = f"{name}: {updated}/{replicas} updated, {available}/{replicas} available"
    progressing = condition(deployment, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(False, detail, f"{name}: {progressing.get('message', '')}")
    done = (
        _generation_seen(deployment) is True
        and updated >= replicas
        and available >= replicas
        and total <= updated
        and is_true(deployment, "Available")
    )
    return Readiness(done, detail)


# Gateway API reasons that waiting cannot fix (the others, e.g. Pending, can).
_GATEWAY_PERMANENT = ("InvalidParameters", "UnsupportedAddress", "UnsupportedValue")
_ROUTE_PERMANENT = ("NotAllowedByListeners", "NoMatchingParent", "UnsupportedValue")
_REFS_PERMANENT = ("InvalidKind", "RefNotPermitted", "UnsupportedProtocol")


def gateway_readiness(gateway: Mapping[str, Any] | None) -> Readiness:
    if gateway is None:
        return Readiness(False, "the Gateway does not exist (yet)")
    name = _name(gateway)
    generation = (gateway.get("metadata") or {}).get("generation")
    programmed = condition(gateway, "Programmed")
    accepted = condition(gateway, "Accepted")
    detail = (
        f"{name}: Accepted={describe_condition(accepted)}, "
        f"Programmed={describe_condition(programmed)}"
    )
    if (
        accepted is not None
        and accepted.get("status") == "False"
        and accepted.get("reason") in _GATEWAY_PERMANENT
    ):
        return Readiness(False, detail, f"{name} not accepted: {accepted.get('message', '')}")
    current = programmed is not None and (
        programmed.get("observedGeneration") is None
        or generation is None
        or int(programmed["observedGeneration"]) >= int(generation)
    )
    return Readiness(bool(current and is_true(gateway, "Programmed")), detail)


def route_readiness(route: Mapping[str, Any] | None) -> Readiness:
    """Accepted and ResolvedRefs on every parent the route names."""
    if route is None:
        return Readiness(False, "the HTTPRoute does not exist (yet)")
    name = _name(route)
    wanted = [p.get("name") for p in (route.get("spec") or {}).get("parentRefs") or []]
    parents = ((route.get("status") or {}).get("parents")) or []
    states = []
    done = bool(wanted)
    for parent_name in wanted:
        entry = next(
            (p for p in parents if (p.get("parentRef") or {}).get("name") == parent_name), None
        )
        conditions = {c.get("type"): c for c in (entry or {}).get("conditions") or []}
        accepted, resolved = conditions.get("Accepted"), conditions.get("ResolvedRefs")
        states.append(
            f"{parent_name}: Accepted={describe_condition(accepted)}, "
            f"ResolvedRefs={describe_condition(resolved)}"
        )
        for item, permanent in ((accepted, _ROUTE_PERMANENT), (resolved, _REFS_PERMANENT)):
            if (
                item is not None
                and item.get("status") == "False"
                and item.get("reason") in permanent
            ):
                return Readiness(
                    False,
                    f"{name}: " + "; ".join(states),
                    f"{name} on {parent_name}: {item.get('type')}={item.get('reason')}: "
                    f"{item.get('message', '')}",
                )
        ok = all(c is not None and c.get("status") == "True" for c in (accepted, resolved))
        done = done and ok
    return Readiness(done, f"{name}: " + ("; ".join(states) or "no parentRefs"))


def describe_condition(item: Mapping[str, Any] | None) -> str:
    """A condition as `True`, `False (Reason)` or `unknown` (absent), for details."""
    if item is None:
        return "unknown"
    reason = item.get("reason")
    return f"{item.get('status')}" + (f" ({reason})" if reason else "")


def group_of(pod: Mapping[str, Any]) -> int | None:
    value = _labels(pod).get(GROUP_INDEX)
    return int(value) if value is not None and str(value).isdigit() else None
