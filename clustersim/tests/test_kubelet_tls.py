"""The kubelet API is HTTPS with a serving certificate for the node's addresses, signed by the
kubelet CA, and the API server verifies it when told that CA (--kubelet-certificate-authority).

`clustersim up` signs the kubelets' certificates with the cluster CA and verifies them with it.
A separate `serve` + `agent` pair shows the verification is real: with an unrelated CA the API
server refuses the kubelet's certificate, with the agent's CA it accepts it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_fixtures import TEST_TIME_SCALE, SimCluster, start_cluster, wait_for
from apiserver_process import launch, start_server, stop_process
from kubernetes.client.rest import ApiException

from clustersim.pki import load_or_create_ca

POD = {
    "metadata": {"name": "web"},
    "spec": {"containers": [{"name": "app", "image": "registry.example.com/web:1",
                             "ports": [{"containerPort": 8080}]}]},
}


def _running(cluster: SimCluster, namespace: str) -> bool:
    pod = cluster.pod(namespace, "web") or {}
    return (pod.get("status") or {}).get("phase") == "Running"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    sim = start_cluster(tmp_path_factory.mktemp("kubelet-tls"), "h200-2node")
    try:
        yield sim
    finally:
        sim.stop()


def _kubelet_address(cluster: SimCluster, node_name: str) -> tuple[str, int]:
    node = cluster.get_json(f"/api/v1/nodes/{node_name}")
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    return ip, int(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"])


def test_logs_and_node_proxy_reach_the_kubelet_over_verified_tls(cluster: SimCluster) -> None:
    namespace = cluster.namespace("tls")
    cluster.core.create_namespaced_pod(namespace, POD)
    wait_for(lambda: _running(cluster, namespace), 30, "pod Running")
    # the API server verifies the kubelet's certificate against the cluster CA (up's setup)
    assert isinstance(cluster.logs(namespace, "web", "app"), str)
    node_name = cluster.pod(namespace, "web")["spec"]["nodeName"]  # type: ignore[index]
    assert cluster.core.connect_get_node_proxy_with_path(node_name, "healthz") == "ok"


def test_the_kubelet_serves_https_for_its_node_addresses_only(cluster: SimCluster) -> None:
    ip, port = _kubelet_address(cluster, "h200-node-1")
    # plain HTTP is what the API server used to send: a TLS listener does not answer it
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://{ip}:{port}/healthz", timeout=5)
    verified = ssl.create_default_context(cafile=cluster.info["kubelet_ca"])
    with urllib.request.urlopen(f"https://{ip}:{port}/healthz", context=verified,
                                timeout=5) as answer:
        assert answer.read() == b"ok"
    # the certificate names this node's address, not another one's
    other_ip, _ = _kubelet_address(cluster, "h200-node-2")
    strict = ssl.create_default_context(cafile=cluster.info["kubelet_ca"])
    with socket_to(ip, port) as raw, pytest.raises(ssl.SSLCertVerificationError):
        strict.wrap_socket(raw, server_hostname=other_ip)


@contextlib.contextmanager
def socket_to(host: str, port: int) -> Iterator[socket.socket]:
    sock = socket.create_connection((host, port), timeout=5)
    try:
        yield sock
    finally:
        sock.close()


def _agent(kubeconfig: Path, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    info = workdir / "agent.json"
    info.unlink(missing_ok=True)
    process = launch(
        ["agent", "--kubeconfig", str(kubeconfig), "--profile", "h200-2node",
         "--time-scale", str(TEST_TIME_SCALE), "--info-out", str(info), *extra],
        workdir / "agent.log",
    )
    wait_for(lambda: info.exists() or process.poll() is not None, 30, "agent info file")
    assert process.poll() is None, (workdir / "agent.log").read_text()[-2000:]
    return process


def _log_answer(cluster: SimCluster, namespace: str) -> tuple[int, str]:
    try:
        return 200, cluster.logs(namespace, "web", "app")
    except ApiException as error:
        return int(error.status), str(error.body)


def test_the_api_server_refuses_a_kubelet_certificate_from_another_ca(tmp_path: Path) -> None:
    trusted = load_or_create_ca(tmp_path / "trusted", "trusted-kubelet-ca")
    load_or_create_ca(tmp_path / "other", "other-kubelet-ca")
    server, kubeconfig = start_server(tmp_path / "server", "--kubelet-certificate-authority",
                                      str(trusted.cert_path))
    agent: subprocess.Popen[bytes] | None = None
    try:
        # an agent whose kubelets are signed by another CA: the server refuses them
        agent = _agent(kubeconfig, tmp_path, "--kubelet-ca-cert", str(tmp_path / "other/ca.crt"),
                       "--kubelet-ca-key", str(tmp_path / "other/ca.key"))
        cluster = SimCluster(agent, tmp_path, {"kubeconfig": str(kubeconfig)})
        namespace = cluster.namespace("tls")
        cluster.core.create_namespaced_pod(namespace, POD)
        wait_for(lambda: _running(cluster, namespace), 30, "pod Running")
        status, body = _log_answer(cluster, namespace)
        assert status == 500, body
        assert "certificate verify failed" in json.loads(body)["message"], body
        stop_process(agent)
        # the same cluster with kubelets signed by the trusted CA: logs flow
        agent = _agent(kubeconfig, tmp_path, "--kubelet-ca-cert", str(trusted.cert_path),
                       "--kubelet-ca-key", str(tmp_path / "trusted/ca.key"))
        wait_for(lambda: _log_answer(cluster, namespace)[0] == 200, 30, "logs over verified TLS")
    finally:
        if agent is not None:
            stop_process(agent)
        stop_process(server)
