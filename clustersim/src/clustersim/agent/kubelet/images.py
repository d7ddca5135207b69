"""Image pulls on one node: pull policy, per-image durations, serialized pulls, the node's cache.

The kubelet pulls one image at a time by default (serializeImagePulls), so a pull may wait for
another. A pull of an image another pod is pulling waits for that pull and then finds the image
in the store: one full pull per image per node. The Pulled event reports both times as the
real one does:
`Successfully pulled image "x" in 5m0s (5m12s including waiting). Image size: 21474836480 bytes.`
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from clustersim.agent.profile import ClusterProfile


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() for the magnitudes we print (ms, s, m, h)."""
    if seconds < 1:
        millis = round(seconds * 1000, 3)
        text = f"{millis:.3f}".rstrip("0").rstrip(".")
        return f"{text}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{sec_text}"
    if minutes:
        return f"{int(minutes)}m{sec_text}"
    return sec_text


def pull_policy(container: dict[str, object]) -> str:
    """imagePullPolicy with the API defaulting rule (Always for :latest or no tag)."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image") or "")
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def normalized_reference(image: str) -> str:
    """docker.io/library/ style full reference, as containerd prints it."""
    first = image.split("/", 1)[0]
    if "/" not in image:
        image = f"docker.io/library/{image}"
    elif "." not in first and ":" not in first and first != "localhost":
        image = f"docker.io/{image}"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        image += ":latest"
    return image


def image_id(image: str) -> str:
    reference = normalized_reference(image)
    repository = reference.rsplit("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    digest = hashlib.sha256(reference.encode()).hexdigest()
    return f"{repository}@sha256:{digest}"


DEFAULT_IMAGE_BYTES = 104857600


@dataclass(frozen=True)
class PullPlan:
    simulated_seconds: float
    size_bytes: int
    known: bool


@dataclass
class NodeImages:
    """One node's image store and its single pull slot."""

    present: set[str] = field(default_factory=set)
    slot: asyncio.Lock = field(default_factory=asyncio.Lock)

    def plan(self, profile: ClusterProfile, image: str) -> PullPlan:
        rule = profile.image_rule(image)
        known = rule is not None or profile.unknown_images == "pull"
        size = rule.size_bytes if rule is not None else DEFAULT_IMAGE_BYTES
        if image in self.present:
            return PullPlan(profile.durations.image_recheck, size, known)
        if rule is not None:
            return PullPlan(rule.pull_seconds, size, True)
        return PullPlan(profile.durations.image_pull_default, size, known)
