"""The activities this project's workers run.

Where it sits: worker.py registers everything `activities()` returns; the activity modules
(kube, waits, helm, serving, preflight, specfile, analysis) define them. A function rather than a
constant so that activities needing configuration (a kubeconfig, a clock) can be built when the
worker starts instead of at import time. Every activity takes and returns models from
spec/activity_io.py (load_spec_file takes a path and returns the spec).
"""

from collections.abc import Callable
from typing import Any

from activities import (
    analysis,
    capacity_hold,
    cluster,
    helm,
    kube,
    preflight,
    serving,
    specfile,
    verification,
    waits,
)


def activities() -> list[Callable[..., Any]]:
    return [
        # the spec a scheduled rollout reads from a file
        specfile.load_spec_file,
        # preflight (phase 1)
        preflight.preflight,
        # Kubernetes objects (phases 2, 4, 6, 9 and rollback)
        kube.apply_model_service,
        kube.ensure_namespace,
        kube.apply_crds,
        kube.ensure_hf_token_secret,
        kube.snapshot_objects,
        kube.read_last_known_good,
        kube.mark_last_known_good,
        kube.restore_snapshot,
        kube.delete_objects,
        # waits
        waits.wait_for_lws_rollout,
        waits.wait_for_deployment,
        waits.wait_for_gateway,
        waits.wait_for_route,
        # Helm releases (phases 2, 3, 5 and rollback)
        helm.helm_upgrade_install,
        helm.helm_rollback,
        helm.helm_uninstall,
        helm.helm_release_status,
        # serving (phase 7) and verification (phase 8)
        serving.wait_for_model_load,
        verification.verify_gateway,
        # analysis gates between model-service steps
        analysis.analyze_canary,
        # the cluster workflow's asks (phases 2 and 3, teardown)
        cluster.ensure_shared_pieces,
        cluster.release_shared_pieces,
        capacity_hold.hold_capacity,
        capacity_hold.free_capacity,
    ]
