"""The endpoint picker (EPP): its ServiceAccount, plugin ConfigMap, Deployment, Service and RBAC.

Rendered as llm-d-modelservice v0.2.0 renders them for the wide-EP example. The EPP is the
gateway's ext-proc server: the InferencePool names its Service, and it watches the pool's pods
(hence the Role) to pick a prefill and a decode pod for every request.
"""

from __future__ import annotations

from typing import Any

from manifests.labels import EPP, epp_name, object_meta
from spec.rollout import RolloutSpec

GRPC_PORT = 9002
GRPC_HEALTH_PORT = 9003
METRICS_PORT = 9090
CONFIG_MOUNT = "/config"
_CONFIG_VOLUME = "plugins-config-volume"
# The EPP's gRPC health service name; the probes ask for it explicitly.
_HEALTH_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


def epp_service_account(spec: RolloutSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(spec, epp_name(spec)),
    }


def epp_config_map(spec: RolloutSpec) -> dict[str, Any]:
    """Only the plugins config the EPP is started with.

    The chart also ships four built-in configs the `-configFile` argument never selects; they
    are left out (an intended difference from the reference render).
    """
    epp = spec.model_service.epp
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(spec, epp_name(spec)),
        "data": {epp.plugins_config_file: epp.plugins_config},
    }


def epp_deployment(spec: RolloutSpec) -> dict[str, Any]:
    name = epp_name(spec)
    selector = {EPP: name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(spec, name, selector),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(selector)},
            "template": {
                "metadata": {"labels": dict(selector)},
                "spec": {
                    "containers": [_epp_container(spec)],
                    "volumes": [{"name": _CONFIG_VOLUME, "configMap": {"name": name}}],
                    # The chart sets the deprecated alias too; kept so the object matches.
                    "serviceAccount": name,
                    "serviceAccountName": name,
                },
            },
        },
    }


def _epp_container(spec: RolloutSpec) -> dict[str, Any]:
    epp = spec.model_service.epp
    config_dir = CONFIG_MOUNT.lstrip("/")
    return {
        "name": "epp",
        "imagePullPolicy": "Always",
        "image": epp.image,
        "args": [
            "--poolName",
            spec.model_service.pool_name,
            "--poolNamespace",
            spec.target.namespace,
            "-v",
            str(epp.verbosity),
            "--zap-encoder",
            "json",
            "--grpcPort",
            str(GRPC_PORT),
            "--grpcHealthPort",
            str(GRPC_HEALTH_PORT),
            "-configFile",
            f"{config_dir}/{epp.plugins_config_file}",
        ],
        "ports": [
            {"containerPort": GRPC_PORT, "name": "grpc", "protocol": "TCP"},
            {"containerPort": GRPC_HEALTH_PORT, "name": "grpc-health", "protocol": "TCP"},
            {"containerPort": METRICS_PORT, "name": "metrics", "protocol": "TCP"},
        ],
        "readinessProbe": _grpc_health_probe(),
        "livenessProbe": _grpc_health_probe(),
        "volumeMounts": [{"name": _CONFIG_VOLUME, "mountPath": CONFIG_MOUNT}],
    }


def _grpc_health_probe() -> dict[str, Any]:
    return {
        "grpc": {"port": GRPC_HEALTH_PORT, "service": _HEALTH_SERVICE},
        "initialDelaySeconds": 5,
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def epp_service(spec: RolloutSpec) -> dict[str, Any]:
    name = epp_name(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(spec, name),
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {
                    "name": "grpc-ext-proc",
                    "port": GRPC_PORT,
                    "targetPort": GRPC_PORT,
                    "protocol": "TCP",
                    "appProtocol": "http2",
                }
            ],
            "selector": {EPP: name},
        },
    }


def epp_role(spec: RolloutSpec) -> dict[str, Any]:
    read = ["get", "watch", "list"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": object_meta(spec, epp_name(spec)),
        "rules": [
            {
                "apiGroups": ["inference.networking.x-k8s.io"],
                "resources": ["inferencemodels", "inferencepools"],
                "verbs": list(read),
            },
            {"apiGroups": [""], "resources": ["pods"], "verbs": list(read)},
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": list(read),
            },
            # The EPP checks the token and the rights of whoever scrapes its metrics endpoint.
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["tokenreviews"],
                "verbs": ["create"],
            },
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["subjectaccessreviews"],
                "verbs": ["create"],
            },
        ],
    }


def epp_role_binding(spec: RolloutSpec) -> dict[str, Any]:
    name = epp_name(spec)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": object_meta(spec, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        # No namespace on the subject, as the chart: RBAC reads it as the binding's namespace.
        "subjects": [{"kind": "ServiceAccount", "name": name}],
    }
