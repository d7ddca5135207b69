"""Pod logs through a kubelet (over HTTPS), and the pod and service proxies, over real loopback
connections."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apiserver_process import RunningApiServer
from http_fakes import EchoHandler, KubeletHandler, kubelet_tls, serving
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from clustersim.apiserver import ApiServer, ApiServerConfig

POD_IP = "127.1.77.10"


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadingHTTPServer]:
    """A kubelet over HTTPS (the API server dials kubelets over TLS; the session server is
    not told the kubelet CA, so, as kube-apiserver by default, it does not verify it)."""
    with serving(KubeletHandler, tls=kubelet_tls(tmp_path_factory.mktemp("pki"))) as server:
        yield server


@pytest.fixture()
def backend() -> Iterator[ThreadingHTTPServer]:
    with serving(EchoHandler, host=POD_IP) as server:
        yield server


def register_node(core: k8s.CoreV1Api, kubelet: ThreadingHTTPServer) -> str:
    name = f"node-{uuid.uuid4().hex[:6]}"
    core.create_node(
        {
            "metadata": {"name": name},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.server_address[1]}},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )
    return name


def bind(apiserver: RunningApiServer, namespace: str, pod: str, node: str) -> int:
    """POST pods/binding (the client's typed call cannot parse the Status a server answers)."""
    return apiserver.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods/{pod}/binding",
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        },
    ).status


def running_pod(
    apiserver: RunningApiServer,
    core: k8s.CoreV1Api,
    namespace: str,
    name: str,
    node: str | None,
    containers: list[str],
    pod_ip: str = POD_IP,
    port: int = 8000,
) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "containers": [
                    {"name": c, "image": "vllm/vllm:0.10", "ports": [{"containerPort": port}]}
                    for c in containers
                ]
            },
        },
    )
    if node is None:
        return
    assert bind(apiserver, namespace, name, node) == 201
    core.patch_namespaced_pod_status(
        name,
        namespace,
        {
            "status": {
                "phase": "Running",
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "containerStatuses": [
                    {
                        "name": c,
                        "ready": True,
                        "restartCount": 0,
                        "image": "x",
                        "imageID": "",
                        "state": {"running": {}},
                    }
                    for c in containers
                ],
            }
        },
    )


def test_binding_assigns_the_node_once(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    kubelet: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    node = register_node(core, kubelet)
    running_pod(apiserver, core, namespace, "bound", node, ["vllm"])
    pod = core.read_namespaced_pod("bound", namespace)
    assert pod.spec.node_name == node
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    assert bind(apiserver, namespace, "bound", "other") == 409
    with pytest.raises(ApiException) as immutable:
        core.patch_namespaced_pod("bound", namespace, {"spec": {"nodeName": "other"}})
    assert immutable.value.status == 422


def test_pod_logs_come_from_the_kubelet_with_parameters(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    kubelet: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    node = register_node(core, kubelet)
    running_pod(apiserver, core, namespace, "talker", node, ["vllm"])
    text = core.read_namespaced_pod_log("talker", namespace, tail_lines=2, timestamps=True)
    assert text.splitlines() == [
        f"{namespace}/talker/vllm line 4",
        f"{namespace}/talker/vllm line 5",
    ]
    path, query = KubeletHandler.requests[-1]
    assert path == f"/containerLogs/{namespace}/talker/vllm"
    assert query["tailLines"] == ["2"] and query["timestamps"] == ["true"]


def test_followed_logs_stream_until_the_kubelet_ends(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    kubelet: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    node = register_node(core, kubelet)
    running_pod(apiserver, core, namespace, "follower", node, ["vllm"])
    response = core.read_namespaced_pod_log(
        "follower", namespace, follow=True, _preload_content=False
    )
    lines = [line.decode() for line in response.stream() for line in line.splitlines()]
    assert lines[-2:] == ["followed 1", "followed 2"]


def test_log_errors_match_the_real_server(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    kubelet: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    node = register_node(core, kubelet)
    running_pod(apiserver, core, namespace, "pair", node, ["vllm", "broken"])
    with pytest.raises(ApiException) as choose:
        core.read_namespaced_pod_log("pair", namespace)
    assert choose.value.status == 400
    assert json.loads(choose.value.body)["message"] == (
        "a container name must be specified for pod pair, choose one of: [vllm broken]"
    )
    with pytest.raises(ApiException) as kubelet_error:
        core.read_namespaced_pod_log("pair", namespace, container="broken", previous=True)
    assert kubelet_error.value.status == 400
    assert "previous terminated container" in json.loads(kubelet_error.value.body)["message"]
    running_pod(apiserver, core, namespace, "waiting", None, ["vllm"])
    with pytest.raises(ApiException) as waiting:
        core.read_namespaced_pod_log("waiting", namespace)
    assert waiting.value.status == 400
    assert json.loads(waiting.value.body)["message"] == (
        'container "vllm" in pod "waiting" is waiting to start: ContainerCreating'
    )


def test_pod_proxy_forwards_method_query_body_without_credentials(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    kubelet: ThreadingHTTPServer,
    backend: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    node = register_node(core, kubelet)
    port = backend.server_address[1]
    running_pod(apiserver, core, namespace, "web", node, ["vllm"], port=port)
    response = apiserver.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods/web:{port}/proxy/v1/completions?x=1",
        {"prompt": "hi"},
    )
    assert response.status == 200
    assert response.headers["X-Backend"] == "echo"
    echoed: dict[str, Any] = response.json()
    assert (echoed["method"], echoed["path"]) == ("POST", "/v1/completions?x=1")
    assert json.loads(echoed["body"]) == {"prompt": "hi"}
    assert "authorization" not in echoed["headers"]
    assert echoed["server"] == f"{POD_IP}:{port}"


def test_service_proxy_picks_a_ready_endpoint_and_maps_the_port(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    backend: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    port = backend.server_address[1]
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "gateway"},
            "spec": {
                "selector": {"app": "gw"},
                "ports": [{"name": "http", "port": 80, "targetPort": port}],
            },
        },
    )
    k8s.DiscoveryV1Api(api_client).create_namespaced_endpoint_slice(
        namespace,
        {
            "metadata": {
                "name": "gateway-abc",
                "labels": {"kubernetes.io/service-name": "gateway"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["127.1.77.99"], "conditions": {"ready": False}},
                {"addresses": [POD_IP], "conditions": {"ready": True}},
            ],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        },
    )
    for target in ("gateway", "gateway:http", "gateway:80", "http:gateway:http"):
        response = apiserver.request(
            "GET", f"/api/v1/namespaces/{namespace}/services/{target}/proxy/v1/models"
        )
        assert response.status == 200, target
        assert response.json()["path"] == "/v1/models"
        assert response.json()["server"] == f"{POD_IP}:{port}"


def test_service_proxy_without_endpoints_is_503(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_service(
        namespace, {"metadata": {"name": "lonely"}, "spec": {"ports": [{"port": 80}]}}
    )
    response = apiserver.request("GET", f"/api/v1/namespaces/{namespace}/services/lonely/proxy/")
    assert response.status == 503
    assert response.json()["message"] == 'no endpoints available for service "lonely"'


def test_pod_proxy_to_a_closed_port_is_503_with_the_error(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    kubelet: ThreadingHTTPServer,
) -> None:
    core = k8s.CoreV1Api(api_client)
    node = register_node(core, kubelet)
    running_pod(apiserver, core, namespace, "closed", node, ["vllm"], pod_ip="127.1.77.11")
    response = apiserver.request(
        "GET", f"/api/v1/namespaces/{namespace}/pods/closed:9/proxy/health"
    )
    assert response.status == 503
    assert "error trying to reach" in response.json()["message"]


def test_a_followed_log_ends_at_the_kubelet_when_its_client_leaves(
    apiserver: RunningApiServer,
    api_client: k8s.ApiClient,
    namespace: str,
    kubelet: ThreadingHTTPServer,
) -> None:
    """A quiet container sends nothing for a long time; the API server must not keep its
    kubelet stream open once the reader has gone (kubectl logs -f interrupted)."""
    core = k8s.CoreV1Api(api_client)
    node = register_node(core, kubelet)
    running_pod(apiserver, core, namespace, "quiet-pod", node, ["quiet"])
    KubeletHandler.quiet_client_left.clear()
    response = core.read_namespaced_pod_log(
        "quiet-pod", namespace, follow=True, _preload_content=False
    )
    assert response.read(8) == b"started\n"
    response.close()  # closes the connection (release_conn would keep it for reuse)
    assert KubeletHandler.quiet_client_left.wait(5), "the kubelet stream is still open"


async def test_stopping_the_server_ends_open_log_follows_at_once(tmp_path: Path) -> None:
    with serving(KubeletHandler, tls=kubelet_tls(tmp_path / "kubelet-pki")) as fake_kubelet:
        # this server verifies the kubelet's certificate
        server = ApiServer(ApiServerConfig(
            data_dir=tmp_path, insecure_http=True,
            kubelet_certificate_authority=tmp_path / "kubelet-pki" / "ca.crt"))
        await server.start()
        stopped = False
        try:
            headers = {"Authorization": f"Bearer {server.token}"}
            async with aiohttp.ClientSession(base_url=server.url, headers=headers) as session:
                port = fake_kubelet.server_address[1]
                await session.post("/api/v1/nodes", json={"metadata": {"name": "n"}, "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})
                await session.post("/api/v1/namespaces/default/pods", json={
                    "metadata": {"name": "p"},
                    "spec": {"nodeName": "n", "containers": [{"name": "quiet", "image": "x"}]}})
                await session.patch(
                    "/api/v1/namespaces/default/pods/p/status",
                    data=json.dumps({"status": {"containerStatuses": [
                        {"name": "quiet", "ready": True, "restartCount": 0, "image": "x",
                         "imageID": "", "state": {"running": {}}}]}}),
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                follow = await session.get("/api/v1/namespaces/default/pods/p/log?follow=true")
                assert await follow.content.readline() == b"started\n"
                began = time.monotonic()
                await server.stop()
                stopped = True
                assert time.monotonic() - began < 1.5, "an open follow held the shutdown"
                assert await follow.content.read() == b""
        finally:
            if not stopped:
                await server.stop()
