"""Rollout side effects as Temporal activities, one module per system touched.

kube (Kubernetes objects), waits (watching objects become ready), serving (vLLM and the
gateway), preflight, helm, specfile; activities/registry.py lists them for the worker. The
plumbing they drive lives in k8s/, helmcli/ and vllmsignals/; failures.py and heartbeat.py are
how they speak to Temporal. What other packages (the CLI) use is re-exported here.
"""

from activities.kube import model_service_objects, read_snapshot
from activities.preflight import (
    GATEWAY_API_CRDS,
    INFERENCE_EXTENSION_CRDS,
    capacity_sync,
    check_crds,
    fits_an_empty_cluster_sync,
)

__all__ = [
    "GATEWAY_API_CRDS",
    "INFERENCE_EXTENSION_CRDS",
    "capacity_sync",
    "check_crds",
    "fits_an_empty_cluster_sync",
    "model_service_objects",
    "read_snapshot",
]
