"""Fault injection: what can go wrong, where, and for how long.

Faults come from a YAML fault profile (`--faults FILE`) or at run time from the admin endpoint and
`python -m clustersim fault ...`. Each fault selects pods by image glob, `llm-d.ai/role` label, pod
name regex, namespace and container name (nodes by name regex), and is bounded: it fires at most
`count` times (default 1) and/or stays active `duration_seconds` (simulated seconds, multiplied by
the time scale). Nothing is injected unless asked. A `degrade` fault (a regression staged on
the vLLM of one image: `ttft_factor`, `error_rate`, `no_pd`) lasts until cleared unless a
count or duration is given, as it is a property of the image, not an event.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from clustersim.agent.meta import KubeObject, labels_of, name_of, namespace_of
from clustersim.agent.profile import TimeScale
from clustersim.agent.quantity import QuantityError, parse_resource_list

ROLE_LABEL = "llm-d.ai/role"

POD_FAULTS = ("image_pull", "crash", "oom", "slow_load", "load_hang", "degrade")
NODE_FAULTS = ("node_not_ready", "capacity")
GATEWAY_FAULTS = ("gateway_503",)
FAULT_KINDS = POD_FAULTS + NODE_FAULTS + GATEWAY_FAULTS
CRASH_ERRORS = ("cuda_oom", "nixl", "nvshmem", "hf_gated", "generic")
# Node faults are stateful (a node stays NotReady); without an explicit duration they last this
# many simulated seconds, or until cleared through the admin endpoint.
DEFAULT_NODE_FAULT_SECONDS = 600.0


class FaultError(ValueError):
    """An invalid fault specification; the message names the field."""


@dataclass(frozen=True)
class FaultMatch:
    image: str | None = None
    role: str | None = None
    pod: str | None = None
    namespace: str | None = None
    container: str | None = None
    node: str | None = None

    def pod_matches(self, pod: KubeObject, container: KubeObject | None = None) -> bool:
        if self.namespace is not None and namespace_of(pod) != self.namespace:
            return False
        if self.role is not None and labels_of(pod).get(ROLE_LABEL) != self.role:
            return False
        if self.pod is not None and not re.search(self.pod, name_of(pod)):
            return False
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        if self.node is not None and not re.search(self.node, node):
            return False
        if container is not None:
            if self.container is not None and container.get("name") != self.container:
                return False
            image = str(container.get("image") or "")
            if self.image is not None and not fnmatch.fnmatchcase(image, self.image):
                return False
        return True

    def node_matches(self, node_name: str) -> bool:
        return self.node is None or re.search(self.node, node_name) is not None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Fault:
    id: str
    kind: str
    match: FaultMatch
    count: int | None
    duration_seconds: float | None
    after_seconds: float = 0.0
    error: str = "generic"
    exit_code: int = 1
    factor: float = 3.0
    message: str | None = None
    resources: dict[str, str] = field(default_factory=dict)
    ttft_factor: float = 1.0
    error_rate: float = 0.0
    no_pd: bool = False
    fired: int = 0
    created: float = field(default_factory=time.monotonic)
    expires: float | None = None

    @property
    def exhausted(self) -> bool:
        if self.count is not None and self.fired >= self.count:
            return True
        return self.expires is not None and time.monotonic() >= self.expires

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "match": self.match.as_dict(),
            "count": self.count,
            "duration_seconds": self.duration_seconds,
            "fired": self.fired,
            "active": not self.exhausted,
        }
        if self.kind in ("crash", "oom"):
            body["after_seconds"] = self.after_seconds
        if self.kind == "crash":
            body["error"] = self.error
            body["exit_code"] = self.exit_code
        if self.kind == "slow_load":
            body["factor"] = self.factor
        if self.kind == "capacity":
            body["resources"] = self.resources
        if self.kind == "degrade":
            body.update(ttft_factor=self.ttft_factor, error_rate=self.error_rate, no_pd=self.no_pd)
        if self.message:
            body["message"] = self.message
        return body


def _number(spec: dict[str, Any], key: str, default: float | None) -> float | None:
    value = spec.get(key, default)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise FaultError(f"fault field {key} must be a number, got {value!r}") from error
    if number < 0:
        raise FaultError(f"fault field {key} must not be negative, got {value!r}")
    return number


_ALLOWED = {
    "id",
    "kind",
    "match",
    "count",
    "duration_seconds",
    "after_seconds",
    "error",
    "exit_code",
    "factor",
    "message",
    "resources",
    "ttft_factor",
    "error_rate",
    "no_pd",
}


def parse_fault(spec: dict[str, Any], fault_id: str) -> Fault:
    """Validate one fault mapping; every error is a sentence naming the field."""
    if not isinstance(spec, dict):
        raise FaultError("a fault is a mapping with at least `kind`")
    unknown = sorted(set(spec) - _ALLOWED)
    if unknown:
        raise FaultError(f"unknown fault fields {unknown}; allowed are {sorted(_ALLOWED)}")
    kind = str(spec.get("kind", ""))
    if kind not in FAULT_KINDS:
        raise FaultError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    raw_match = spec.get("match") or {}
    if not isinstance(raw_match, dict):
        raise FaultError("fault field match must be a mapping")
    bad = sorted(set(raw_match) - set(FaultMatch.__dataclass_fields__))
    if bad:
        raise FaultError(
            f"unknown match fields {bad}; use image, role, pod, namespace, container, node"
        )
    for key in ("pod", "node"):
        if key in raw_match:
            try:
                re.compile(str(raw_match[key]))
            except re.error as error:
                raise FaultError(f"match.{key} is not a regular expression: {error}") from error
    match = FaultMatch(**{k: str(v) for k, v in raw_match.items()})
    duration = _number(spec, "duration_seconds", None)
    raw_count = spec.get("count")
    if kind in NODE_FAULTS:
        count = None
        if duration is None:
            duration = DEFAULT_NODE_FAULT_SECONDS
    elif kind == "degrade":
        count = raw_count
    else:
        count = 1 if raw_count is None and duration is None else raw_count
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise FaultError(f"fault field count must be a positive integer, got {count!r}")
    crash_error = str(spec.get("error", "generic"))
    if crash_error not in CRASH_ERRORS:
        raise FaultError(f"crash error {crash_error!r} is not one of {', '.join(CRASH_ERRORS)}")
    resources = {str(k): str(v) for k, v in (spec.get("resources") or {}).items()}
    if kind == "capacity":
        if not resources:
            raise FaultError("a capacity fault needs `resources`, e.g. {nvidia.com/gpu: 4}")
        try:
            parse_resource_list(dict(resources))
        except QuantityError as error:
            raise FaultError(f"capacity fault resources: {error}") from error
    exit_code = int(spec.get("exit_code", 137 if kind == "oom" else 1))
    error_rate = _number(spec, "error_rate", 0.0) or 0.0
    if error_rate > 1:
        raise FaultError(f"fault field error_rate must be at most 1, got {error_rate!r}")
    no_pd = spec.get("no_pd", False)
    if not isinstance(no_pd, bool):
        raise FaultError(f"fault field no_pd must be true or false, got {no_pd!r}")
    return Fault(
        id=str(spec.get("id") or fault_id),
        kind=kind,
        match=match,
        count=count,
        duration_seconds=duration,
        after_seconds=_number(spec, "after_seconds", 0.0) or 0.0,
        error=crash_error,
        exit_code=exit_code,
        factor=_number(spec, "factor", 3.0) or 3.0,
        message=str(spec["message"]) if spec.get("message") else None,
        resources=resources,
        ttft_factor=_number(spec, "ttft_factor", 1.0) or 1.0,
        error_rate=error_rate,
        no_pd=no_pd,
    )


def parse_fault_document(text: str) -> list[dict[str, Any]]:
    """A fault profile: `faults: [...]`, a list, or one fault mapping (YAML or JSON)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise FaultError(f"fault profile is not valid YAML: {error}") from error
    if isinstance(data, dict) and "faults" in data:
        data = data["faults"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise FaultError("a fault profile is a mapping with `faults:`, a list, or one fault")
    return data


class FaultSet:
    """The active faults; consulted by the kubelet, the node manager and the gateway."""

    def __init__(self, scale: TimeScale) -> None:
        self.scale = scale
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Callable[[], None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def add(self, spec: dict[str, Any]) -> Fault:
        fault = parse_fault(spec, f"f{next(self._ids)}")
        if fault.id in self._faults:
            raise FaultError(f"a fault with id {fault.id!r} already exists")
        if fault.duration_seconds is not None:
            wall = self.scale.delay(fault.duration_seconds)
            fault.expires = time.monotonic() + wall
            loop = asyncio.get_running_loop()
            self._timers[fault.id] = loop.call_later(wall, self._expire, fault.id)
        self._faults[fault.id] = fault
        self._changed()
        return fault

    def _expire(self, fault_id: str) -> None:
        self._timers.pop(fault_id, None)
        self._changed()

    def remove(self, fault_id: str) -> bool:
        fault = self._faults.pop(fault_id, None)
        timer = self._timers.pop(fault_id, None)
        if timer is not None:
            timer.cancel()
        if fault is not None:
            self._changed()
        return fault is not None

    def clear(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._faults.clear()
        self._changed()

    def all(self) -> list[Fault]:
        return list(self._faults.values())

    def take(self, kind: str, pod: KubeObject, container: KubeObject | None = None) -> Fault | None:
        """The first active matching fault of `kind`, counting one firing."""
        for fault in self._faults.values():
            if (
                fault.kind == kind
                and not fault.exhausted
                and fault.match.pod_matches(pod, container)
            ):
                fault.fired += 1
                return fault
        return None

    def take_gateway(self) -> Fault | None:
        for fault in self._faults.values():
            if fault.kind == "gateway_503" and not fault.exhausted:
                fault.fired += 1
                return fault
        return None

    def node_faults(self, node_name: str) -> list[Fault]:
        return [
            f
            for f in self._faults.values()
            if f.kind in NODE_FAULTS and not f.exhausted and f.match.node_matches(node_name)
        ]
