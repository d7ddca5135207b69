"""API fault injection through the admin endpoint and `python -m clustersim fault api`."""

from __future__ import annotations

import http.client
import json
import urllib.error
from collections.abc import Iterator

import pytest
from apiserver_process import RunningApiServer, clustersim_cli
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError as TransportError


@pytest.fixture(autouse=True)
def no_faults_left(apiserver: RunningApiServer) -> Iterator[None]:
    yield
    apiserver.admin("DELETE", "/faults")


def add_fault(apiserver: RunningApiServer, **rule: object) -> dict[str, object]:
    response = apiserver.admin("POST", "/faults", rule)
    assert response.status == 201, response.body
    return dict(response.json())


def test_error_faults_fire_a_bounded_number_of_times(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    add_fault(
        apiserver,
        kind="error",
        code=503,
        verbs=["list"],
        path=f"/namespaces/{namespace}/configmaps$",
        count=2,
    )
    for _ in range(2):
        with pytest.raises(ApiException) as error:
            core.list_namespaced_config_map(namespace)
        assert error.value.status == 503
    assert core.list_namespaced_config_map(namespace).items == []
    assert apiserver.admin("GET", "/faults").json() == {"faults": []}


def test_throttling_fault_answers_429_with_retry_after(
    apiserver: RunningApiServer, namespace: str
) -> None:
    add_fault(
        apiserver,
        kind="error",
        code=429,
        retryAfterSeconds=3,
        verbs=["create"],
        path=f"/namespaces/{namespace}/",
        count=1,
    )
    response = apiserver.request(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "throttled"}}
    )
    assert response.status == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["reason"] == "TooManyRequests"
    assert response.json()["details"]["retryAfterSeconds"] == 3


def test_latency_fault_delays_matching_requests(
    apiserver: RunningApiServer, namespace: str
) -> None:
    rule = add_fault(
        apiserver,
        kind="latency",
        latencyMs=50,
        verbs=["get"],
        path=f"/namespaces/{namespace}/configmaps/slow",
        durationSeconds=30,
    )
    response = apiserver.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/slow")
    assert response.status == 404
    [active] = apiserver.admin("GET", "/faults").json()["faults"]
    assert active["id"] == rule["id"] and active["fired"] == 1


def test_watch_cut_drops_the_stream_after_n_events(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    for name in ("a", "b", "c"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    add_fault(
        apiserver,
        kind="watch-cut",
        afterEvents=2,
        path=f"/namespaces/{namespace}/configmaps",
        count=1,
    )
    response = core.list_namespaced_config_map(
        namespace, watch=True, timeout_seconds=5, _preload_content=False
    )
    received = []
    with pytest.raises(TransportError):
        for chunk in response.stream():
            received.extend(line for line in chunk.splitlines() if line.strip())
    assert [json.loads(line)["object"]["metadata"]["name"] for line in received] == ["a", "b"]


def test_reset_fault_drops_the_connection(apiserver: RunningApiServer, namespace: str) -> None:
    add_fault(
        apiserver,
        kind="reset",
        verbs=["get"],
        path=f"/namespaces/{namespace}/configmaps/reset",
        count=1,
    )
    path = f"/api/v1/namespaces/{namespace}/configmaps/reset"
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        apiserver.request("GET", path)
    assert apiserver.request("GET", path).status == 404


def test_faults_must_be_bounded_and_well_formed(apiserver: RunningApiServer) -> None:
    unbounded = apiserver.admin("POST", "/faults", {"kind": "error", "code": 500})
    assert unbounded.status == 400
    assert "bound" in unbounded.json()["message"]
    nonsense = apiserver.admin("POST", "/faults", {"kind": "explode", "count": 1})
    assert nonsense.status == 400


def test_fault_cli_adds_lists_and_clears_rules(
    apiserver: RunningApiServer, api_client: k8s.ApiClient, namespace: str
) -> None:
    def cli(*args: str) -> str:
        result = clustersim_cli(
            "fault", "api", "--kubeconfig", str(apiserver.kubeconfig), *args, timeout=30
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    added = json.loads(
        cli(
            "add",
            "--error",
            "500",
            "--verb",
            "get",
            "--path",
            f"/namespaces/{namespace}/configmaps/",
            "--count",
            "5",
        )
    )
    assert added["kind"] == "error" and added["remaining"] == 5
    core = k8s.CoreV1Api(api_client)
    with pytest.raises(ApiException) as error:
        core.read_namespaced_config_map("anything", namespace)
    assert error.value.status == 500
    listed = json.loads(cli("list"))["faults"]
    assert [(f["id"], f["fired"]) for f in listed] == [(added["id"], 1)]
    cli("clear")
    assert json.loads(cli("list")) == {"faults": []}
