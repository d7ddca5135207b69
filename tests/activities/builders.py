"""Realistic Kubernetes objects for the activities' unit tests: pods, nodes, LWS status.

Shaped as the API server returns them (kubelet container states, scheduler conditions, LWS
labels), so the pure functions are tested on what they will meet.
"""

from __future__ import annotations

import copy
from typing import Any

LWS = "ms-wide-ep-llm-d-modelservice-decode"
NAMESPACE = "llm-d-wide-ep"


def pod(
    name: str = f"{LWS}-0",
    *,
    container: str = "vllm-worker-decode",
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    restarts: int = 0,
    node: str | None = "h200-node-0",
    conditions: list[dict[str, Any]] | None = None,
    revision: str = "abc123",
    group: int = 0,
    worker: int = 0,
    deleting: bool = False,
    ready: bool = False,
    requests: dict[str, str] | None = None,
    phase: str = "Running",
    namespace: str = NAMESPACE,
    lws: str = LWS,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "labels": {
            "leaderworkerset.sigs.k8s.io/name": lws,
            "leaderworkerset.sigs.k8s.io/template-revision-hash": revision,
            "leaderworkerset.sigs.k8s.io/group-index": str(group),
            "leaderworkerset.sigs.k8s.io/worker-index": str(worker),
            "llm-d.ai/role": "decode",
        },
    }
    if deleting:
        metadata["deletionTimestamp"] = "2025-07-26T10:00:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions
        if conditions is not None
        else [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
        "containerStatuses": [
            {
                "name": container,
                "image": "ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1",
                "ready": ready,
                "restartCount": restarts,
                "state": state if state is not None else {"running": {"startedAt": "x"}},
                "lastState": last_state or {},
            }
        ],
    }
    spec: dict[str, Any] = {
        "containers": [{"name": container, "resources": {"requests": requests or {}}}]
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def unschedulable(message: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
        }
    ]


def node(
    name: str,
    *,
    gpus: int = 8,
    labels: dict[str, str] | None = None,
    ready: str = "True",
    unschedulable: bool = False,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    allocatable = {
        "cpu": "128",
        "memory": "2Ti",
        "ephemeral-storage": "3500Gi",
        "pods": "110",
        "nvidia.com/gpu": str(gpus),
        "rdma/ib": "1k",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels if labels is not None else {"gpu.nvidia.com/model": "H200"},
        },
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {
            "capacity": dict(allocatable),
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}],
        },
    }


def event(name: str, reason: str, message: str, kind: str = "Pod") -> dict[str, Any]:
    return {
        "involvedObject": {"kind": kind, "name": name, "namespace": NAMESPACE},
        "type": "Warning",
        "reason": reason,
        "message": message,
        "count": 3,
    }


def lws(
    *,
    replicas: int = 1,
    size: int = 2,
    updated: int = 1,
    ready: int = 1,
    available: bool = True,
    template: dict[str, Any] | None = None,
    generation: int = 2,
) -> dict[str, Any]:
    pod_template = template or {
        "metadata": {"labels": {"llm-d.ai/role": "decode"}},
        "spec": {"containers": [{"name": "vllm-worker-decode", "image": "vllm:new"}]},
    }
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": LWS, "namespace": NAMESPACE, "generation": generation},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {"size": size, "workerTemplate": pod_template},
        },
        "status": {
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "conditions": [
                {
                    "type": "Available" if available else "Progressing",
                    "status": "True",
                    "reason": "AllGroupsReady" if available else "GroupsProgressing",
                }
            ],
        },
    }


def leader_statefulset(lws_object: dict[str, Any], revision: str = "abc123") -> dict[str, Any]:
    """The leader StatefulSet the LWS controller writes for `lws_object`'s current template."""
    template = copy.deepcopy(lws_object["spec"]["leaderWorkerTemplate"]["workerTemplate"])
    template["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": lws_object["metadata"]["name"],
            "namespace": NAMESPACE,
            "labels": {
                "leaderworkerset.sigs.k8s.io/name": lws_object["metadata"]["name"],
                "leaderworkerset.sigs.k8s.io/template-revision-hash": revision,
            },
        },
        "spec": {"template": template},
    }
