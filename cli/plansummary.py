"""What `plan` leads with: the real changes in one line each, bookkeeping apart.

Where it sits: cli/commands/plan.py reads the cluster and hands each rendered object with its
live counterpart (after a server-side apply dry run) to these pure functions:
- `is_bookkeeping`: the only difference is our own spec-revision annotation, which every object
  takes whenever anything in the spec changes; such objects are listed on one line;
- `image_changes`: container images that change, by role (`llm-d.ai/role`), e.g.
  `image ghcr.io/llm-d/llm-d:v0.2.0 → v0.2.1 in decode, prefill`;
- `gpus`: the GPUs a LeaderWorkerSet asks for (replicas x group), for "N GPUs more".
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from manifests.labels import SPEC_REVISION_ANNOTATION

ROLE_LABEL = "llm-d.ai/role"
GPU_RESOURCE = "nvidia.com/gpu"


def without_bookkeeping(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without our spec-revision annotation, wherever it sits (object or pod template)."""
    cleaned = copy.deepcopy(obj)
    _strip(cleaned)
    return cleaned


def _strip(node: Any) -> None:
    if isinstance(node, dict):
        annotations = node.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(SPEC_REVISION_ANNOTATION, None)
            if not annotations:
                del node["annotations"]
        for value in node.values():
            _strip(value)
    elif isinstance(node, list):
        for item in node:
            _strip(item)


def is_bookkeeping(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Different, but only in the spec-revision annotation."""
    return before != after and without_bookkeeping(before) == without_bookkeeping(after)


def _images(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key in ("containers", "initContainers"):
            for container in node.get(key) or []:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    yield container["image"]
        for value in node.values():
            yield from _images(value)
    elif isinstance(node, list):
        for item in node:
            yield from _images(item)


def role_of(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(ROLE_LABEL) or (obj.get("metadata") or {}).get("name", "?"))


@dataclass(frozen=True)
class ImageChange:
    old: str
    new: str
    roles: tuple[str, ...]

    def text(self) -> str:
        """`image repo:old → new in decode, prefill` (the repository once when it stays)."""
        old_repo = self.old.rpartition(":")[0]
        new_repo, _, new_tag = self.new.rpartition(":")
        new = new_tag if old_repo and old_repo == new_repo and "/" not in new_tag else self.new
        return f"image {self.old} → {new} in {', '.join(self.roles)}"


def image_changes(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[ImageChange]:
    """Images that change between live (before) and rendered (after) objects, by role; a new
    object (before empty) brings its images from nothing, which is not an image change."""
    roles_by_change: dict[tuple[str, str], list[str]] = {}
    for before, after in pairs:
        if not before:
            continue
        old = sorted(set(_images(before)) - set(_images(after)))
        new = sorted(set(_images(after)) - set(_images(before)))
        for old_image, new_image in zip(old, new, strict=False):
            roles = roles_by_change.setdefault((old_image, new_image), [])
            if role_of(after) not in roles:
                roles.append(role_of(after))
    return [ImageChange(old, new, tuple(roles)) for (old, new), roles in roles_by_change.items()]


def _template_gpus(template: Any) -> int:
    spec = (template or {}).get("spec") or {}
    total = 0
    for container in spec.get("containers") or []:
        limits = ((container or {}).get("resources") or {}).get("limits") or {}
        total += int(limits.get(GPU_RESOURCE, 0) or 0)
    return total


def gpus(obj: dict[str, Any]) -> int:
    """GPUs a LeaderWorkerSet asks for: replicas x (leader + (size - 1) x worker); 0 for any
    other kind (or nothing)."""
    if not obj or obj.get("kind") != "LeaderWorkerSet":
        return 0
    spec = obj.get("spec") or {}
    template = spec.get("leaderWorkerTemplate") or {}
    worker = _template_gpus(template.get("workerTemplate"))
    leader_template = template.get("leaderTemplate")
    leader = _template_gpus(leader_template) if leader_template else worker
    size = int(template.get("size", 1))
    return int(spec.get("replicas", 1)) * (leader + (size - 1) * worker)


def gpu_text(delta: int) -> str:
    if delta < 0:
        return f"{-delta} GPU{'s' if delta != -1 else ''} fewer"
    return f"{delta} GPU{'s' if delta != 1 else ''} more"
