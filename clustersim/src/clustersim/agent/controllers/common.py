"""Helpers the workload controllers share: pods from templates, readiness, revision bookkeeping."""

from __future__ import annotations

import copy
from typing import Any

from clustersim.agent.meta import (
    KubeObject,
    find_condition,
    is_terminating,
    owner_reference,
    parse_time,
    utc_now,
)


def pod_from_template(
    template: KubeObject,
    owner: KubeObject,
    *,
    name: str | None = None,
    generate_name: str | None = None,
    extra_labels: dict[str, str] | None = None,
) -> KubeObject:
    metadata_in = template.get("metadata") or {}
    labels = dict(metadata_in.get("labels") or {})
    labels.update(extra_labels or {})
    metadata: KubeObject = {
        "namespace": (owner.get("metadata") or {}).get("namespace"),
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }
    if metadata_in.get("annotations"):
        metadata["annotations"] = dict(metadata_in["annotations"])
    if name:
        metadata["name"] = name
    if generate_name:
        metadata["generateName"] = generate_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def is_active(pod: KubeObject) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not is_terminating(pod) and phase not in ("Succeeded", "Failed")


def is_ready(pod: KubeObject) -> bool:
    condition = find_condition((pod.get("status") or {}).get("conditions"), "Ready")
    return condition is not None and condition.get("status") == "True"


def is_running_and_ready(pod: KubeObject) -> bool:
    return (
        (pod.get("status") or {}).get("phase") == "Running"
        and is_ready(pod)
        and not is_terminating(pod)
    )


def is_available(pod: KubeObject, min_ready_wall_seconds: float) -> bool:
    if not is_ready(pod) or is_terminating(pod):
        return False
    if min_ready_wall_seconds <= 0:
        return True
    condition = find_condition((pod.get("status") or {}).get("conditions"), "Ready") or {}
    since = parse_time(condition.get("lastTransitionTime"))
    return since is None or (utc_now() - since).total_seconds() >= min_ready_wall_seconds


def restart_count(pod: KubeObject) -> int:
    status = pod.get("status") or {}
    statuses = list(status.get("containerStatuses") or []) + list(
        status.get("initContainerStatuses") or []
    )
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        scaled = int(text[:-1]) * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(text)
