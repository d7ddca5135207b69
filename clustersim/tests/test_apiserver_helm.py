"""helm v4 and helm v3 against clustersim: a release's whole life on a small local chart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from apiserver_process import RunningApiServer
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

CHART = Path(__file__).parent / "charts" / "demo"
BIN = Path(sys.executable).parent
TIMEOUT = 90


class Helm:
    """One helm binary with private HOME, KUBECONFIG and helm cache/config/data dirs."""

    def __init__(self, binary: Path, kubeconfig: Path, home: Path, namespace: str) -> None:
        self.binary = binary
        self.namespace = namespace
        self.environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.binary), *args, "--namespace", self.namespace],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def releases(self) -> list[dict[str, Any]]:
        return list(json.loads(self.run("list", "--output", "json")))

    def status(self, release: str) -> dict[str, Any]:
        return dict(json.loads(self.run("status", release, "--output", "json")))


@pytest.fixture(params=["helm", "helm3"])
def helm(request: pytest.FixtureRequest, apiserver: RunningApiServer, tmp_path: Path) -> Helm:
    binary = BIN / request.param
    if not binary.exists():
        pytest.skip(f"{request.param} not installed at {binary} (run scripts/install_tools.py)")
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(apiserver.kubeconfig, kubeconfig)
    return Helm(binary, kubeconfig, tmp_path, f"helm-{uuid.uuid4().hex[:8]}")


def deployment_state(
    api_client: k8s.ApiClient, namespace: str, release: str
) -> tuple[int, str, str]:
    apps = k8s.AppsV1Api(api_client)
    core = k8s.CoreV1Api(api_client)
    deployment = apps.read_namespaced_deployment(f"{release}-web", namespace)
    settings = core.read_namespaced_config_map(f"{release}-settings", namespace)
    return (
        deployment.spec.replicas,
        deployment.spec.template.spec.containers[0].image,
        settings.data["greeting"],
    )


def test_release_install_upgrade_history_rollback_uninstall(
    helm: Helm, api_client: k8s.ApiClient
) -> None:
    release = "demo"
    helm.run("install", release, str(CHART), "--create-namespace")
    [listed] = helm.releases()
    assert (listed["name"], listed["revision"], listed["status"]) == (release, "1", "deployed")
    assert helm.status(release)["info"]["status"] == "deployed"
    assert deployment_state(api_client, helm.namespace, release) == (1, "nginx:1.27", "hello")
    service = k8s.CoreV1Api(api_client).read_namespaced_service(f"{release}-web", helm.namespace)
    assert service.spec.cluster_ip.startswith("127.200.")

    helm.run(
        "upgrade",
        release,
        str(CHART),
        "--set",
        "replicas=3,image=nginx:1.28",
        "--set",
        "greeting=bye",
    )
    [listed] = helm.releases()
    assert (listed["revision"], listed["status"]) == ("2", "deployed")
    assert helm.status(release)["version"] == 2
    assert deployment_state(api_client, helm.namespace, release) == (3, "nginx:1.28", "bye")
    assert (
        k8s.CoreV1Api(api_client)
        .read_namespaced_service(f"{release}-web", helm.namespace)
        .spec.cluster_ip
        == service.spec.cluster_ip
    )

    history = json.loads(helm.run("history", release, "--output", "json"))
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]

    helm.run("rollback", release, "1")
    [listed] = helm.releases()
    assert (listed["revision"], listed["status"]) == ("3", "deployed")
    assert helm.status(release)["info"]["description"] == "Rollback to 1"
    assert deployment_state(api_client, helm.namespace, release) == (1, "nginx:1.27", "hello")

    helm.run("uninstall", release)
    assert helm.releases() == []
    with pytest.raises(ApiException) as error:
        k8s.AppsV1Api(api_client).read_namespaced_deployment(f"{release}-web", helm.namespace)
    assert error.value.status == 404
    storage = k8s.CoreV1Api(api_client).list_namespaced_secret(
        helm.namespace, label_selector="owner=helm"
    )
    assert storage.items == []
