"""The LeaderWorkerSet pod webhook's part, applied when the StatefulSet controller creates pods.

Leader pods get their group index (from the pod ordinal) and group key; worker pods their worker
index; every container gets LWS_LEADER_ADDRESS (`<leader>.<subdomain>.<namespace>`),
LWS_GROUP_SIZE and LWS_WORKER_INDEX, as the real webhook injects them.
"""

from __future__ import annotations

import hashlib

from clustersim.agent.meta import KubeObject, annotations_of, labels_of, name_of, namespace_of

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


def mutate_lws_pod(pod: KubeObject, _: KubeObject) -> None:
    labels = pod.setdefault("metadata", {}).setdefault("labels", {})
    lws_name = labels.get(NAME_LABEL)
    if not lws_name:
        return
    namespace = namespace_of(pod)
    name = name_of(pod)
    annotations = annotations_of(pod)
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
        ("LWS_WORKER_INDEX", labels_of(pod).get(WORKER_INDEX_LABEL, "0")),
    ]
    spec = pod.get("spec") or {}
    for container in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        _add_env(container, values)
