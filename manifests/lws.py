"""The prefill and decode LeaderWorkerSets and the ServiceAccount their vLLM pods run as.

Rendered as llm-d-modelservice v0.2.0 renders them with `multinode: true`: one LWS per role, a
group of `groupSize` pods per replica, only a `workerTemplate` (the leader uses it too). Every pod
runs one vLLM API server with `dataParallelLocal` data-parallel ranks; the ranks of a group form
one data-parallel collective of `groupSize x dataParallelLocal`, which the vLLM script works out
at start from the LWS_* variables the LWS webhook injects. Decode pods also run the routing
sidecar (a native sidecar on the InferencePool's port) in front of vLLM on 8200.
"""

from __future__ import annotations

import copy
import math
import shlex
from datetime import timedelta
from typing import Any

from manifests.labels import object_meta, role_labels
from spec.rollout import RoleName, RolloutSpec

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
# vLLM's port behind the routing sidecar on decode pods (the sidecar takes the pool's port).
DECODE_VLLM_PORT = 8200
# vLLM's data-parallel coordination port on the group leader.
DATA_PARALLEL_RPC_PORT = 5555
HF_CACHE_MOUNT = "/huggingface-cache"
# The chart's `modelArtifacts.size`: the size limit of the model-storage emptyDir, which the
# wide-EP values never mount (they load weights from the node's hf-cache hostPath instead).
MODEL_STORAGE_SIZE = "100Gi"
SHARED_MEMORY_SIZE = "1Gi"
HEALTH_PATH = "/health"
PROBE_PERIOD = timedelta(seconds=10)
_KV_TRANSFER_CONFIG = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
# LWS webhook defaults: rendered explicitly only when the spec or a canary step departs from them.
_DEFAULT_MAX_UNAVAILABLE = 1
_DEFAULT_MAX_SURGE = 0


def model_service_account(spec: RolloutSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(spec, spec.model_service.full_name),
    }


def vllm_port(spec: RolloutSpec, role: RoleName) -> int:
    """Where vLLM itself listens: behind the sidecar on decode, on the pool's port on prefill."""
    if role == "decode":
        return DECODE_VLLM_PORT
    return spec.model_service.inference_pool.target_port


def leader_worker_set(
    spec: RolloutSpec, role: RoleName, partition: int | None = None
) -> dict[str, Any]:
    """The LWS of one role; `partition` (a canary step) updates only groups with index >= it."""
    settings = spec.model_service.role(role)
    lws_spec: dict[str, Any] = {
        "replicas": settings.replicas,
        "leaderWorkerTemplate": {
            "size": settings.group_size,
            "workerTemplate": _pod_template(spec, role),
        },
    }
    strategy = _rollout_strategy(spec, role, partition)
    if strategy is not None:
        lws_spec["rolloutStrategy"] = strategy
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": object_meta(spec, spec.model_service.lws_name(role), role_labels(spec, role)),
        "spec": lws_spec,
    }


def _rollout_strategy(
    spec: RolloutSpec, role: RoleName, partition: int | None
) -> dict[str, Any] | None:
    strategy = spec.strategy.for_role(role)
    defaults = (
        strategy.max_unavailable == _DEFAULT_MAX_UNAVAILABLE
        and strategy.max_surge == _DEFAULT_MAX_SURGE
    )
    if defaults and partition is None:
        return None
    configuration: dict[str, Any] = {
        "maxUnavailable": strategy.max_unavailable,
        "maxSurge": strategy.max_surge,
    }
    if partition is not None:
        configuration["partition"] = partition
    return {"type": "RollingUpdate", "rollingUpdateConfiguration": configuration}


def _pod_template(spec: RolloutSpec, role: RoleName) -> dict[str, Any]:
    service = spec.model_service
    pod: dict[str, Any] = {}
    if role == "decode":
        pod["initContainers"] = [_routing_sidecar(spec)]
    pod["serviceAccountName"] = service.full_name
    affinity = _node_affinity(spec, role)
    if affinity is not None:
        pod["affinity"] = {"nodeAffinity": affinity}
    pod["volumes"] = [
        {"emptyDir": {"medium": "Memory", "sizeLimit": SHARED_MEMORY_SIZE}, "name": "dshm"},
        {
            "hostPath": {"path": service.cache_host_path, "type": "DirectoryOrCreate"},
            "name": "hf-cache",
        },
        {"name": "model-storage", "emptyDir": {"sizeLimit": MODEL_STORAGE_SIZE}},
    ]
    pod["containers"] = [_vllm_container(spec, role)]
    # Exactly the chart's labels: anything revision-specific here would restart the pods.
    return {"metadata": {"labels": role_labels(spec, role)}, "spec": pod}


def _routing_sidecar(spec: RolloutSpec) -> dict[str, Any]:
    sidecar = spec.model_service.routing_sidecar
    port = spec.model_service.inference_pool.target_port
    return {
        "name": "routing-proxy",
        "args": [
            f"--port={port}",
            f"--vllm-port={DECODE_VLLM_PORT}",
            f"--connector={sidecar.connector}",
            f"-v={sidecar.verbosity}",
            f"--secure-proxy={str(sidecar.secure_proxy).lower()}",
        ],
        "image": sidecar.image,
        "imagePullPolicy": "Always",
        "ports": [{"containerPort": port}],
        "resources": {},
        # A native sidecar: started before vLLM and kept running beside it.
        "restartPolicy": "Always",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
    }


def _node_affinity(spec: RolloutSpec, role: RoleName) -> dict[str, Any] | None:
    settings = spec.model_service.role(role)
    if settings.node_affinity is not None:
        return copy.deepcopy(settings.node_affinity)
    accelerator = spec.model_service.accelerator
    if accelerator is None:
        return None
    expression = {
        "key": accelerator.label_key,
        "operator": "In",
        "values": list(accelerator.label_values),
    }
    return {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [expression]}]
        }
    }


def _vllm_container(spec: RolloutSpec, role: RoleName) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": f"vllm-worker-{role}",
        "image": spec.model_service.image_for(role),
        "securityContext": {
            "capabilities": {"add": ["IPC_LOCK", "SYS_RAWIO"]},
            "runAsGroup": 0,
            "runAsUser": 0,
        },
        "imagePullPolicy": "Always",
        "command": ["/bin/bash", "-c"],
        "args": [vllm_script(spec, role)],
        "env": _env(spec, role),
        "resources": _resources(spec, role),
        "volumeMounts": [
            {"mountPath": "/dev/shm", "name": "dshm"},
            {"mountPath": HF_CACHE_MOUNT, "name": "hf-cache"},
        ],
        "workingDir": "/code",
    }
    if spec.model_service.startup_probe:
        container.update(_model_load_probes(spec, role))
    return container


def vllm_script(spec: RolloutSpec, role: RoleName) -> str:
    """The chart's vLLM start script, byte for byte for the wide-EP values.

    The data-parallel size, this pod's first rank and the leader's address come from shell
    arithmetic over LWS_GROUP_SIZE, LWS_WORKER_INDEX and LWS_LEADER_ADDRESS (injected by the LWS
    webhook) and DP_SIZE_LOCAL (our env): one script serves every pod of the group.
    """
    service = spec.model_service
    arguments = [
        shlex.quote(service.model_name),
        f"--port {vllm_port(spec, role)}",
        "--disable-log-requests",
        "--disable-uvicorn-access-log",
        "--enable-expert-parallel",
        "--data-parallel-hybrid-lb",
        "--tensor-parallel-size $TP_SIZE",
        "--data-parallel-size $((LWS_GROUP_SIZE * DP_SIZE_LOCAL))",
        "--data-parallel-size-local $DP_SIZE_LOCAL",
        "--data-parallel-address ${LWS_LEADER_ADDRESS}",
        f"--data-parallel-rpc-port {DATA_PARALLEL_RPC_PORT}",
        "--data-parallel-start-rank $START_RANK",
        "--trust-remote-code",
        f"--kv_transfer_config {shlex.quote(_KV_TRANSFER_CONFIG)}",
        *(shlex.quote(argument) for argument in service.role(role).extra_args),
    ]
    lines = [
        "#################",
        f"# RUN vLLM {role} worker",
        "#################",
        "START_RANK=$(( ${LWS_WORKER_INDEX:-0} * DP_SIZE_LOCAL ))",
        "",
        "source /opt/vllm/bin/activate",
        "exec vllm serve \\",
        " \\\n".join(f"  {argument}" for argument in arguments),
    ]
    return "\n".join(lines) + "\n"


def _env(spec: RolloutSpec, role: RoleName) -> list[dict[str, Any]]:
    settings = spec.model_service.role(role)
    token = spec.model_service.hf_token
    env: list[dict[str, Any]] = []
    for variable in settings.env:
        item: dict[str, Any] = {"name": variable.name}
        if variable.value_from is not None:
            item["valueFrom"] = copy.deepcopy(variable.value_from)
        else:
            item["value"] = variable.value
        env.append(item)
    env += [
        # The chart's DP_SIZE is the group size (its `parallelism.data`), not the DP world size.
        {"name": "DP_SIZE", "value": str(settings.group_size)},
        {"name": "TP_SIZE", "value": str(settings.tensor_parallel)},
        {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": token.secret_name, "key": token.secret_key}},
        },
    ]
    return env


def _resources(spec: RolloutSpec, role: RoleName) -> dict[str, Any]:
    settings = spec.model_service.role(role)
    limits = {
        "ephemeral-storage": settings.ephemeral_storage,
        "memory": settings.memory,
        "nvidia.com/gpu": str(settings.gpus_per_pod),
    }
    if settings.rdma_per_pod:
        limits["rdma/ib"] = str(settings.rdma_per_pod)
    return {"limits": limits, "requests": {"cpu": settings.cpu, **limits}}


def _model_load_probes(spec: RolloutSpec, role: RoleName) -> dict[str, Any]:
    """Ready means "model loaded": vLLM answers /health only once its engine is up."""
    check = {"path": HEALTH_PATH, "port": vllm_port(spec, role)}
    period = int(PROBE_PERIOD.total_seconds())
    budget = math.ceil(spec.budgets.model_load / PROBE_PERIOD)
    return {
        "startupProbe": {
            "httpGet": dict(check),
            "periodSeconds": period,
            "failureThreshold": budget,
        },
        "readinessProbe": {"httpGet": dict(check), "periodSeconds": period},
    }
