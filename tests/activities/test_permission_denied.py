"""A missing RBAC rule, met where the plumbing used to read it as something else: a refused
pod log is not "no log", a refused proxy is not "not ready", a refused watch while waiting for a
deletion is not "still there". Each ends as PermissionDenied naming the verb and resource.

The identity is a ServiceAccount of clustersim's API server (RBAC enforced) with a TokenRequest
token and only the rules each test grants.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from activities import kube
from k8s.client import KubeClient, KubeError
from spec.activity_io import DeleteObjectsInput, FailureEvidence, ObjectRef
from spec.rollout import Target
from tests.activities.conftest import SimCluster
from tests.activities.specs import environment
from tests.workflows.e2e import VENV_BIN


def service_account(kube_api: SimCluster, workdir: Path, rules: list[dict[str, Any]]) -> Target:
    """A fresh ServiceAccount holding `rules` cluster-wide; a target that authenticates as it."""
    name = f"sa-{uuid.uuid4().hex[:8]}"
    client = kube_api.client()
    try:
        client.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": name, "namespace": "default"}}, force=True)
        client.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": name}, "rules": rules}, force=True)
        client.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "default"}],
        }, force=True)
    finally:
        client.close()
    token = subprocess.run(
        [str(VENV_BIN / "kubectl"), "--kubeconfig", str(kube_api.kubeconfig), "create", "token",
         name, "-n", "default"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()
    config = yaml.safe_load(kube_api.kubeconfig.read_text(encoding="utf-8"))
    for user in config["users"]:
        user["user"] = {"token": token}
    kubeconfig = workdir / f"{name}.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
    return Target(cluster="clustersim", namespace="default", kubeconfig=str(kubeconfig))


def test_a_refused_pod_log_or_proxy_raises_instead_of_reading_as_absent(
    kube_api: SimCluster, tmp_path: Path
) -> None:
    client = KubeClient.for_target(service_account(kube_api, tmp_path, []))
    try:
        with pytest.raises(KubeError) as log:
            client.pod_log("default", "web", "vllm", tail_lines=10)
        with pytest.raises(KubeError) as proxy:
            client.pod_proxy("default", "web", 8200, "/health")
    finally:
        client.close()
    assert log.value.status == 403 and 'cannot get resource "pods/log"' in log.value.message
    assert proxy.value.status == 403
    assert 'cannot get resource "pods/proxy"' in proxy.value.message


def admin_apply(kube_api: SimCluster, obj: dict[str, Any]) -> None:
    """Create `obj` as the cluster's admin (the set-up, not the identity under test)."""
    admin = kube_api.client()
    try:
        admin.apply(obj, force=True)
    finally:
        admin.close()


async def test_a_refused_watch_while_waiting_for_a_deletion_is_permission_denied(
    kube_api: SimCluster, tmp_path: Path
) -> None:
    namespace = f"gone-{uuid.uuid4().hex[:6]}"
    admin_apply(kube_api, {"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": namespace}})
    # May delete namespaces, may not list or watch them.
    target = service_account(kube_api, tmp_path, [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "delete"]},
    ])
    ref = ObjectRef(api_version="v1", kind="Namespace", name=namespace)

    with pytest.raises(ApplicationError) as denied:
        await environment().run(
            kube.delete_objects,
            DeleteObjectsInput(target=target, refs=[ref], timeout=timedelta(seconds=60)),
        )

    assert denied.value.type == "PermissionDenied" and denied.value.non_retryable
    assert 'may not list namespaces (API group "") at the cluster scope' in denied.value.message
    evidence = FailureEvidence.from_details(denied.value.details)
    assert evidence is not None and evidence.data["verb"] == "list"


async def test_objects_gone_at_the_list_still_need_the_watch_so_a_refused_watch_is_denied(
    kube_api: SimCluster, tmp_path: Path
) -> None:
    # Whether a teardown needs RBAC `watch` must not depend on how fast the cluster finalized
    # what it deleted: a ConfigMap has no finalizers, so the list after the delete already
    # shows it gone (a namespace may be Terminating for long on a real cluster).
    name = f"brief-{uuid.uuid4().hex[:6]}"
    admin_apply(kube_api, {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "namespace": "default"}})
    target = service_account(kube_api, tmp_path, [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "delete"]},
    ])
    ref = ObjectRef(api_version="v1", kind="ConfigMap", name=name, namespace="default")

    with pytest.raises(ApplicationError) as denied:
        await environment().run(
            kube.delete_objects,
            DeleteObjectsInput(target=target, refs=[ref], timeout=timedelta(seconds=60)),
        )

    assert denied.value.type == "PermissionDenied" and denied.value.non_retryable
    evidence = FailureEvidence.from_details(denied.value.details)
    assert evidence is not None and evidence.data["verb"] == "watch", evidence
    assert "configmaps" in denied.value.message
