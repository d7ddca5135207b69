"""kubectl 1.35 against clustersim: the reference stack applied server-side, get, wait, logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from apiserver_process import RunningApiServer
from http_fakes import KubeletHandler, kubelet_tls, serving
from kubernetes import client as k8s
from shared_reference import reference_dir

KUBECTL = Path(sys.executable).parent / "kubectl"
TIMEOUT = 60


class Kubectl:
    """Runs kubectl with a private HOME and KUBECONFIG."""

    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
        }

    def run(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(KUBECTL), *args],
            env=self.environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result


@pytest.fixture(scope="module")
def kubectl(apiserver: RunningApiServer, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    if not KUBECTL.exists():
        pytest.skip(f"kubectl not installed at {KUBECTL} (run scripts/install_tools.py)")
    home = tmp_path_factory.mktemp("kubectl-home")
    kubeconfig = home / "kubeconfig"
    shutil.copy(apiserver.kubeconfig, kubeconfig)
    return Kubectl(kubeconfig, home)


@pytest.fixture(scope="module")
def stack_namespace(kubectl: Kubectl) -> Iterator[str]:
    # the rendered manifests name this namespace themselves
    name = "llm-d-wide-ep"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def reference_crds(kubectl: Kubectl) -> Path:
    crds = reference_dir() / "crds"
    kubectl.run(
        "apply",
        "--server-side",
        "-f",
        str(crds / "lws-v0.7.0"),
        "-f",
        str(crds / "gateway-api-v1.3.0" / "standard"),
        "-f",
        str(
            crds
            / "gateway-api-inference-extension-v0.5.0-rc.2"
            / "inference.networking.x-k8s.io_inferencemodels.yaml"
        ),
        "-f",
        str(
            crds
            / "gateway-api-inference-extension-v0.5.0-rc.2"
            / "inference.networking.x-k8s.io_inferencepools.yaml"
        ),
    )
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "--timeout=20s",
        "crd/leaderworkersets.leaderworkerset.x-k8s.io",
        "crd/gateways.gateway.networking.k8s.io",
        "crd/httproutes.gateway.networking.k8s.io",
        "crd/inferencepools.inference.networking.x-k8s.io",
        "crd/inferencemodels.inference.networking.x-k8s.io",
    )
    return crds


def test_every_rendered_manifest_applies_server_side(
    kubectl: Kubectl, reference_crds: Path, stack_namespace: str
) -> None:
    rendered = reference_dir() / "rendered"
    for path in sorted(rendered.glob("ms-wide-ep*.yaml")):
        result = kubectl.run("apply", "--server-side", "-n", stack_namespace, "-f", str(path))
        assert (
            "leaderworkerset.leaderworkerset.x-k8s.io/ms-wide-ep-llm-d-modelservice-decode "
            "serverside-applied" in result.stdout
        )
    infra = kubectl.run(
        "apply",
        "--server-side",
        "-n",
        stack_namespace,
        "-f",
        str(rendered / "infra-wide-ep.rendered.yaml"),
        check=False,
    )
    assert infra.returncode != 0
    assert "configmap/infra-wide-ep-inference-gateway serverside-applied" in infra.stdout
    assert (
        "gateway.gateway.networking.k8s.io/infra-wide-ep-inference-gateway "
        "serverside-applied" in infra.stdout
    )
    assert (
        'no matches for kind "DestinationRule" in version "networking.istio.io/v1beta1"'
        in infra.stderr
    )
    assert 'no matches for kind "Ingress" in version "networking.k8s.io/v1"' in infra.stderr
    again = kubectl.run(
        "apply",
        "--server-side",
        "-n",
        stack_namespace,
        "-f",
        str(rendered / "ms-wide-ep.rendered.yaml"),
    )
    assert "serverside-applied" in again.stdout
    listing = kubectl.run(
        "get",
        "lws,deploy,svc,sa,role,rolebinding,cm,httproute,inferencepool,inferencemodel,gateway",
        "-n",
        stack_namespace,
        "-o",
        "name",
    ).stdout.split()
    assert (
        "leaderworkerset.leaderworkerset.x-k8s.io/ms-wide-ep-llm-d-modelservice-prefill" in listing
    )
    assert "inferencepool.inference.networking.x-k8s.io/ms-wide-ep" in listing
    # the charts' objects, the infra ConfigMap and Gateway, and the namespace's `default` SA:
    # 2 lws, deploy, svc, 3 sa, role, rolebinding, 2 cm, httproute, pool, model, gateway
    assert len(listing) == 15


def test_get_lws_prints_the_crd_columns_and_yaml(
    kubectl: Kubectl, reference_crds: Path, stack_namespace: str
) -> None:
    path = reference_dir() / "rendered" / "ms-wide-ep.rendered.yaml"
    kubectl.run("apply", "--server-side", "-n", stack_namespace, "-f", str(path))
    table = kubectl.run("get", "lws", "-n", stack_namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "DESIRED", "UP-TO-DATE", "AGE"]
    assert table[1].split()[:2] == ["ms-wide-ep-llm-d-modelservice-decode", "1"]
    shown = yaml.safe_load(
        kubectl.run(
            "get",
            "lws",
            "ms-wide-ep-llm-d-modelservice-decode",
            "-n",
            stack_namespace,
            "-o",
            "yaml",
        ).stdout
    )
    assert shown["kind"] == "LeaderWorkerSet"
    assert shown["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert shown["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"] == 0
    wide = kubectl.run("get", "deploy", "-n", stack_namespace, "-o", "wide").stdout
    assert "ghcr.io/llm-d/llm-d-inference-scheduler:v0.2.1" in wide


def test_wait_for_a_condition_and_delete(
    kubectl: Kubectl, api_client: k8s.ApiClient, reference_crds: Path, stack_namespace: str
) -> None:
    path = reference_dir() / "rendered" / "ms-wide-ep.rendered.yaml"
    kubectl.run("apply", "--server-side", "-n", stack_namespace, "-f", str(path))
    name = "ms-wide-ep-llm-d-modelservice-prefill"
    waiter = subprocess.Popen(
        [
            str(KUBECTL),
            "wait",
            "--for=condition=Available",
            "--timeout=30s",
            "-n",
            stack_namespace,
            f"lws/{name}",
        ],
        env=kubectl.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        k8s.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
            "leaderworkerset.x-k8s.io",
            "v1",
            stack_namespace,
            "leaderworkersets",
            name,
            {
                "status": {
                    "replicas": 1,
                    "readyReplicas": 1,
                    "updatedReplicas": 1,
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "True",
                            "reason": "AllGroupsReady",
                            "message": "All replicas are ready",
                            "lastTransitionTime": "2025-07-26T00:00:00Z",
                        }
                    ],
                }
            },
            _content_type="application/merge-patch+json",
        )
        output, errors = waiter.communicate(timeout=TIMEOUT)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait(timeout=10)
    assert waiter.returncode == 0, errors
    assert "condition met" in output
    deleted = kubectl.run("delete", "lws", name, "-n", stack_namespace, "--timeout=20s")
    assert f'"{name}" deleted' in deleted.stdout
    gone = kubectl.run("get", "lws", name, "-n", stack_namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadingHTTPServer]:
    with serving(KubeletHandler, tls=kubelet_tls(tmp_path_factory.mktemp("pki"))) as server:
        yield server


def test_logs_are_read_through_the_node_kubelet(
    kubectl: Kubectl,
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    stack_namespace: str,
    kubelet: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    node = f"kubelet-{uuid.uuid4().hex[:6]}"
    core.create_node(
        {
            "metadata": {"name": node},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.server_address[1]}},
            },
        }
    )
    core.create_namespaced_pod(
        stack_namespace,
        {
            "metadata": {"name": "decode-0"},
            "spec": {
                "containers": [
                    {"name": "vllm-worker-decode", "image": "ghcr.io/llm-d/llm-d:v0.2.0"}
                ]
            },
        },
    )
    binding = apiserver.request(
        "POST",
        f"/api/v1/namespaces/{stack_namespace}/pods/decode-0/binding",
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "decode-0"},
            "target": {"kind": "Node", "name": node},
        },
    )
    assert binding.status == 201
    core.patch_namespaced_pod_status(
        "decode-0",
        stack_namespace,
        {
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "vllm-worker-decode",
                        "ready": True,
                        "restartCount": 0,
                        "image": "x",
                        "imageID": "",
                        "state": {"running": {}},
                    }
                ],
            }
        },
    )
    logs = kubectl.run("logs", "decode-0", "-n", stack_namespace, "--tail=2").stdout
    assert logs.splitlines() == [
        f"{stack_namespace}/decode-0/vllm-worker-decode line 4",
        f"{stack_namespace}/decode-0/vllm-worker-decode line 5",
    ]
    pods = kubectl.run("get", "pods", "-n", stack_namespace, "-o", "wide").stdout
    assert "decode-0" in pods and "Running" in pods and node in pods


def _running(name: str, restarts: int = 0) -> dict[str, object]:
    return {
        "name": name,
        "image": f"{name}:1",
        "imageID": "",
        "ready": True,
        "started": True,
        "restartCount": restarts,
        "state": {"running": {"startedAt": "2025-07-26T00:00:00Z"}},
    }


def test_get_pods_counts_native_sidecars_in_ready(
    kubectl: Kubectl, apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    """A decode pod (routing sidecar as a `restartPolicy: Always` init container, vLLM as the
    app container) shows 2/2 once both run, and its sidecar's restarts count."""
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "decode"},
            "spec": {
                "initContainers": [
                    {"name": "routing-proxy", "image": "proxy:1", "restartPolicy": "Always"},
                    {"name": "setup", "image": "setup:1"},
                ],
                "containers": [{"name": "vllm", "image": "vllm:1"}],
            },
        },
    )
    listing = kubectl.run("get", "pods", "-n", namespace).stdout.splitlines()
    assert listing[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert listing[1].split()[:4] == ["decode", "0/2", "Pending", "0"]
    setup_done = {
        "name": "setup",
        "image": "setup:1",
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
    }
    status = {
        "phase": "Running",
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "initContainerStatuses": [_running("routing-proxy", restarts=1), setup_done],
        "containerStatuses": [_running("vllm")],
    }
    patched = apiserver.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/decode/status",
        {"status": status},
        content_type="application/merge-patch+json",
    )
    assert patched.status == 200, patched.body
    row = kubectl.run("get", "pods", "-n", namespace).stdout.splitlines()[1].split()
    assert row[:4] == ["decode", "2/2", "Running", "1"]
    # a sidecar that has not started yet keeps the pod initializing
    status["initContainerStatuses"] = [
        {**_running("routing-proxy"), "ready": False, "started": False,
         "state": {"waiting": {"reason": "PodInitializing"}}},
        {**setup_done, "state": {"waiting": {"reason": "PodInitializing"}}},
    ]
    status["conditions"] = [{"type": "Initialized", "status": "False"}]
    status["containerStatuses"] = []
    apiserver.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/decode/status",
        {"status": status},
        content_type="application/merge-patch+json",
    )
    row = kubectl.run("get", "pods", "-n", namespace).stdout.splitlines()[1].split()
    assert row[:3] == ["decode", "0/2", "Init:0/2"]
