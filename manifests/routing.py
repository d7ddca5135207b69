"""The routing objects: InferencePool, InferenceModel and the HTTPRoute from the infra Gateway.

Request path: the Gateway (from the infra chart) matches the HTTPRoute, whose backend is the
InferencePool; the gateway asks the pool's EPP (extensionRef) which pod serves the request. The
pool selects every vLLM pod of the model (prefill and decode) on `targetPortNumber`: the routing
sidecar on decode pods, vLLM itself on prefill pods.
"""

from __future__ import annotations

from typing import Any

from manifests.labels import INFERENCE_POOL, epp_name, object_meta, serving_labels
from spec.rollout import RolloutSpec

INFERENCE_API = "inference.networking.x-k8s.io"
INFERENCE_API_VERSION = f"{INFERENCE_API}/v1alpha2"
GATEWAY_API = "gateway.networking.k8s.io"


def inference_pool(spec: RolloutSpec) -> dict[str, Any]:
    service = spec.model_service
    return {
        "apiVersion": INFERENCE_API_VERSION,
        "kind": "InferencePool",
        "metadata": object_meta(spec, service.pool_name),
        "spec": {
            "extensionRef": {
                "failureMode": "FailClose",
                "group": "",
                "kind": "Service",
                "name": epp_name(spec),
            },
            "selector": serving_labels(spec),
            "targetPortNumber": service.inference_pool.target_port,
        },
    }


def inference_model(spec: RolloutSpec) -> dict[str, Any]:
    service = spec.model_service
    return {
        "apiVersion": INFERENCE_API_VERSION,
        "kind": "InferenceModel",
        "metadata": object_meta(spec, service.full_name, serving_labels(spec)),
        "spec": {
            "criticality": "Critical",
            "modelName": service.model_name,
            "poolRef": {"name": service.pool_name},
        },
    }


def http_route(spec: RolloutSpec) -> dict[str, Any]:
    service = spec.model_service
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "HTTPRoute",
        "metadata": object_meta(spec, service.full_name, {INFERENCE_POOL: service.pool_name}),
        "spec": {
            "parentRefs": [{"group": GATEWAY_API, "kind": "Gateway", "name": spec.infra.gateway}],
            "rules": [
                {
                    # Model responses stream for minutes: no request or backend timeout.
                    "timeouts": {"backendRequest": "0s", "request": "0s"},
                    "backendRefs": [
                        {
                            "group": INFERENCE_API,
                            "kind": "InferencePool",
                            "name": service.pool_name,
                            "port": service.inference_pool.target_port,
                            "weight": 1,
                        }
                    ],
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                }
            ],
        },
    }
