"""Cluster profiles: the simulated nodes and every simulated duration, plus the time scale.

A profile is YAML (built-in ones live in `profiles/`, or any file path). All durations are in
simulated seconds; the agent multiplies each by one time-scale factor, so an eight-minute model load
takes 4.8 s at `--time-scale 0.01` and about 1.4 s at 0.003.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import pathlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from clustersim.agent.quantity import QuantityError, ResourceList, parse_resource_list

BUILTIN_PROFILES = ("h200-2node", "h200-3node")

# Periodic work (probes, back-off retries) never runs more often than this, whatever the scale,
# so a tiny scale cannot turn the agent into a busy loop.
MIN_PERIOD_SECONDS = 0.1


class ProfileError(ValueError):
    """A profile that cannot be loaded; the message names the file and field."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]
    capacity: ResourceList
    capacity_text: dict[str, str]
    taints: list[dict[str, Any]]


@dataclass(frozen=True)
class ImageRule:
    pattern: str
    pull_seconds: float
    size_bytes: int


@dataclass(frozen=True)
class Durations:
    container_start: float = 2.0
    init_container_run: float = 3.0
    container_stop: float = 2.0
    model_load: float = 480.0
    image_pull_default: float = 10.0
    image_recheck: float = 1.0
    pod_eviction: float = 300.0
    crash_backoff_initial: float = 10.0
    crash_backoff_max: float = 300.0


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    nodes: list[NodeSpec]
    durations: Durations = field(default_factory=Durations)
    images: list[ImageRule] = field(default_factory=list)
    unknown_images: str = "pull"
    feature_gates: dict[str, bool] = field(default_factory=dict)
    kubelet_version: str = "v1.33.2"

    def image_rule(self, image: str) -> ImageRule | None:
        for rule in self.images:
            if fnmatch.fnmatchcase(image, rule.pattern):
                return rule
        return None


@dataclass(frozen=True)
class TimeScale:
    """Simulated seconds -> wall-clock seconds."""

    factor: float

    def delay(self, simulated_seconds: float) -> float:
        return max(0.0, simulated_seconds * self.factor)

    def period(self, simulated_seconds: float) -> float:
        return max(MIN_PERIOD_SECONDS, simulated_seconds * self.factor)


def _require_mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProfileError(f"{where} must be a mapping")
    return value


def _nodes(raw: Any, source: str) -> list[NodeSpec]:
    if not isinstance(raw, list) or not raw:
        raise ProfileError(f"{source}: `nodes` must be a non-empty list of node groups")
    nodes: list[NodeSpec] = []
    for position, group in enumerate(raw):
        where = f"{source}: nodes[{position}]"
        group = _require_mapping(group, where)
        count = int(group.get("count", 1))
        pattern = str(group.get("name", "node-{index}"))
        capacity_text = {
            k: str(v) for k, v in _require_mapping(group.get("capacity"), where).items()
        }
        capacity_text.setdefault("pods", "110")
        try:
            capacity = parse_resource_list(dict(capacity_text))
        except QuantityError as error:
            raise ProfileError(f"{where}.capacity: {error}") from error
        labels = {k: str(v) for k, v in _require_mapping(group.get("labels"), where).items()}
        taints = list(group.get("taints") or [])
        for index in range(1, count + 1):
            name = pattern.format(index=len(nodes) + 1) if "{index}" in pattern else pattern
            if count > 1 and "{index}" not in pattern:
                name = f"{pattern}-{index}"
            nodes.append(NodeSpec(name, dict(labels), dict(capacity), capacity_text, taints))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ProfileError(f"{source}: node names must be unique, got {names}")
    return nodes


def profile_from_mapping(data: dict[str, Any], source: str) -> ClusterProfile:
    durations_raw = _require_mapping(data.get("durations"), f"{source}: durations")
    known = set(Durations.__dataclass_fields__)
    unknown = sorted(set(durations_raw) - known)
    if unknown:
        raise ProfileError(f"{source}: unknown durations {unknown}; known are {sorted(known)}")
    durations = Durations(**{k: float(v) for k, v in durations_raw.items()})
    images = [
        ImageRule(
            str(rule["image"]),
            float(rule.get("pull_seconds", durations.image_pull_default)),
            int(rule.get("size_bytes", 104857600)),
        )
        for rule in data.get("images") or []
    ]
    unknown_images = str(data.get("unknown_images", "pull"))
    if unknown_images not in ("pull", "fail"):
        raise ProfileError(f"{source}: unknown_images must be `pull` or `fail`")
    gates = {
        str(k): bool(v) for k, v in _require_mapping(data.get("feature_gates"), source).items()
    }
    return ClusterProfile(
        name=str(data.get("name", source)),
        nodes=_nodes(data.get("nodes"), source),
        durations=durations,
        images=images,
        unknown_images=unknown_images,
        feature_gates=gates,
        kubelet_version=str(data.get("kubelet_version", "v1.33.2")),
    )


def load_profile(name_or_path: str) -> ClusterProfile:
    """A built-in profile by name (`h200-2node`, `h200-3node`) or a YAML file by path."""
    if name_or_path in BUILTIN_PROFILES:
        text = (
            importlib.resources.files("clustersim.agent")
            .joinpath("profiles", f"{name_or_path}.yaml")
            .read_text()
        )
        source = name_or_path
    else:
        path = pathlib.Path(name_or_path)
        if not path.is_file():
            raise ProfileError(
                f"profile {name_or_path!r} is neither a built-in profile "
                f"({', '.join(BUILTIN_PROFILES)}) nor a YAML file"
            )
        text = path.read_text()
        source = str(path)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile is a YAML mapping")
    return profile_from_mapping(data, source)
