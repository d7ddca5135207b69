"""Fixtures for the clustersim API server tests: one real server process per test session.

`apiserver` runs `python -m clustersim serve --port 0` as a subprocess on loopback (HTTPS, bearer
token, self-signed CA) and stops it by PID at the end of the session. Tests that write use their
own uuid-suffixed namespace (`namespace` fixture) so they never see each other's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from apiserver_process import RunningApiServer, describe, start_server, stop_process
from kubernetes import client as k8s


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    directory = tmp_path_factory.mktemp("clustersim")
    process, kubeconfig = start_server(directory)
    try:
        yield describe(process, kubeconfig, directory)
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def api_client(apiserver: RunningApiServer) -> k8s.ApiClient:
    return apiserver.kube_api_client()


@pytest.fixture()
def namespace(api_client: k8s.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = k8s.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)
