"""The LeaderWorkerSet v0.7.0 pod webhook: what it adds to leader and worker pods on create.

Leader pods get their group index (from the pod ordinal) and group key; worker pods their worker
index; every container gets LWS_LEADER_ADDRESS (`<leader>.<subdomain>.<namespace>`),
LWS_GROUP_SIZE and LWS_WORKER_INDEX, as the real webhook injects them.

Pure and shared: clustersim's API server applies it as an admission step to every Pod created
with the `leaderworkerset.sigs.k8s.io/name` label while the LeaderWorkerSet kind is served, so
LWS groups form whichever StatefulSet controller creates the pods (the agent's, a real
kube-controller-manager's, a test's); the agent's LWS controller uses its label names. Applying
it twice changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

KubeObject = dict[str, Any]

GROUP = "leaderworkerset.sigs.k8s.io"
NAME_LABEL = f"{GROUP}/name"
GROUP_INDEX_LABEL = f"{GROUP}/group-index"
WORKER_INDEX_LABEL = f"{GROUP}/worker-index"
GROUP_KEY_LABEL = f"{GROUP}/group-key"
TEMPLATE_HASH_LABEL = f"{GROUP}/template-revision-hash"
SIZE_ANNOTATION = f"{GROUP}/size"
LEADER_NAME_ANNOTATION = f"{GROUP}/leader-name"
REPLICAS_ANNOTATION = f"{GROUP}/replicas"
SUBDOMAIN_POLICY_ANNOTATION = f"{GROUP}/subdomainPolicy"


def group_key(namespace: str, leader_name: str) -> str:
    return hashlib.sha1(f"{namespace}/{leader_name}".encode()).hexdigest()


def _ordinal(pod_name: str) -> str:
    return pod_name.rsplit("-", 1)[-1]


def _add_env(container: KubeObject, values: list[tuple[str, str]]) -> None:
    env = list(container.get("env") or [])
    present = {e.get("name") for e in env}
    added = [{"name": k, "value": v} for k, v in values if k not in present]
    # Prepended, so $(LWS_...) references in later variables resolve.
    container["env"] = added + env


def mutate_lws_pod(pod: KubeObject, _: KubeObject | None = None) -> None:
    """Add the webhook's labels and env to a pod being created (in place; idempotent)."""
    metadata = pod.setdefault("metadata", {})
    labels = metadata.get("labels") or {}
    lws_name = labels.get(NAME_LABEL)
    name = str(metadata.get("name") or "")
    if not lws_name or not name:
        return
    metadata["labels"] = labels
    namespace = str(metadata.get("namespace") or "")
    annotations = dict(metadata.get("annotations") or {})
    leader_name = annotations.get(LEADER_NAME_ANNOTATION)
    if leader_name is None:
        leader_name = name
        labels[WORKER_INDEX_LABEL] = "0"
        labels[GROUP_INDEX_LABEL] = _ordinal(name)
        labels[GROUP_KEY_LABEL] = group_key(namespace, name)
    else:
        labels[WORKER_INDEX_LABEL] = _ordinal(name)
    subdomain = (pod.get("spec") or {}).get("subdomain") or lws_name
    values = [
        ("LWS_LEADER_ADDRESS", f"{leader_name}.{subdomain}.{namespace}"),
        ("LWS_GROUP_SIZE", annotations.get(SIZE_ANNOTATION, "1")),
        ("LWS_WORKER_INDEX", labels.get(WORKER_INDEX_LABEL, "0")),
    ]
    spec = pod.get("spec") or {}
    for container in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        _add_env(container, values)
