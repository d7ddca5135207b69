"""The in-process Python API (`ApiServer`) the cluster agent and the demo wiring use."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from clustersim.apiserver import ApiServer, ApiServerConfig


async def test_api_server_starts_writes_a_kubeconfig_and_stops(tmp_path: Path) -> None:
    server = ApiServer(
        ApiServerConfig(port=0, data_dir=tmp_path, kubeconfig_path=tmp_path / "kube" / "config")
    )
    await server.start()
    try:
        assert server.url.startswith("https://127.0.0.1:") and server.port > 0
        assert server.kubeconfig_path == tmp_path / "kube" / "config"
        assert server.ca_path is not None and server.ca_path.exists()
        config = yaml.safe_load(server.kubeconfig_path.read_text())
        assert config["current-context"] == "clustersim"
        assert config["clusters"][0]["name"] == "clustersim"
        assert config["clusters"][0]["cluster"]["server"] == server.url
        assert config["clusters"][0]["cluster"]["certificate-authority-data"]
        assert config["users"][0]["user"]["token"] == server.token
        assert (tmp_path / "token").read_text().strip() == server.token
        api = k8s_config.new_client_from_config(str(server.kubeconfig_path))
        namespaces = await _list_namespaces(api)
        assert namespaces == ["default", "kube-node-lease", "kube-public", "kube-system"]
    finally:
        await server.stop()


async def test_insecure_http_serves_plain_http(tmp_path: Path) -> None:
    server = ApiServer(ApiServerConfig(port=0, data_dir=tmp_path, insecure_http=True))
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        config = yaml.safe_load(server.kubeconfig_path.read_text())
        assert "certificate-authority-data" not in config["clusters"][0]["cluster"]
        api = k8s_config.new_client_from_config(str(server.kubeconfig_path))
        assert "default" in await _list_namespaces(api)
    finally:
        await server.stop()


async def _list_namespaces(api: k8s.ApiClient) -> list[str]:
    import asyncio

    def read() -> list[str]:
        return [n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items]

    return await asyncio.get_running_loop().run_in_executor(None, read)
