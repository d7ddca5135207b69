"""The agent as its own process, driving a separately started API server over HTTP only, and the
`python -m clustersim fault ...` CLI against its admin endpoint."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_fixtures import (
    MODEL,
    TEST_TIME_SCALE,
    SimCluster,
    is_ready,
    wait_for,
)
from apiserver_process import clustersim_cli, launch, stop_process, wait_for_file


@contextlib.contextmanager
def server_and_agent(
    workdir: Path, before_agent: Callable[[Path], None] | None = None
) -> Iterator[SimCluster]:
    """`clustersim serve` and `clustersim agent` as two processes; both stopped by PID."""
    kubeconfig = workdir / "kubeconfig"
    server = launch(
        [
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(workdir / "server"),
            "--kubeconfig-out",
            str(kubeconfig),
        ],
        workdir / "server.log",
    )
    agent: subprocess.Popen[bytes] | None = None
    try:
        wait_for_file(kubeconfig, server, workdir / "server.log")
        if before_agent is not None:
            before_agent(kubeconfig)
        info = workdir / "agent.json"
        agent = launch(
            [
                "agent",
                "--kubeconfig",
                str(kubeconfig),
                "--profile",
                "h200-2node",
                "--time-scale",
                str(TEST_TIME_SCALE),
                "--info-out",
                str(info),
            ],
            workdir / "agent.log",
        )
        wait_for_file(info, agent, workdir / "agent.log")
        details = json.loads(info.read_text())
        details["kubeconfig"] = str(kubeconfig)
        yield SimCluster(agent, workdir, details)
    finally:
        if agent is not None:
            stop_process(agent)
        stop_process(server)


@pytest.fixture(scope="module")
def separate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    with server_and_agent(tmp_path_factory.mktemp("separate")) as cluster:
        yield cluster


def raw_stream(cluster: SimCluster, path: str) -> urllib.request.Request:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    token = config["users"][0]["user"]["token"]
    return urllib.request.Request(server + path, headers={"Authorization": f"Bearer {token}"})


def test_agent_process_registers_nodes_and_runs_pods_over_http(separate: SimCluster) -> None:
    assert separate.info["pid"] != os.getpid()
    server_url = yaml.safe_load(separate.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    assert separate.info["apiServer"] == server_url
    nodes = separate.get_json("/api/v1/nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["h200-node-1", "h200-node-2"]
    addresses = {a["type"]: a["address"] for a in nodes[0]["status"]["addresses"]}
    assert addresses["InternalIP"].startswith("127.0.10.")
    assert nodes[0]["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    leases = wait_for(
        lambda: (
            found
            if len(
                found := separate.get_json(
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
                )["items"]
            )
            == 2
            else None
        ),
        10,
        "a heartbeat Lease per node",
    )
    assert {lease["spec"]["holderIdentity"] for lease in leases} == {"h200-node-1", "h200-node-2"}
    namespace = separate.namespace("separate")
    separate.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "vllm"},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "ghcr.io/llm-d/llm-d:v0.2.0",
                            "command": ["vllm", "serve", MODEL, "--port", "8000"],
                        }
                    ]
                },
            }
        ],
        namespace,
    )
    pod = wait_for(
        lambda: p if is_ready(p := separate.pod(namespace, "vllm")) else None, 20, "the pod to run"
    )
    assert pod["status"]["podIP"].startswith("127.1.")


def test_followed_logs_stream_until_the_container_stops(separate: SimCluster) -> None:
    namespace = separate.namespace("follow")
    separate.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "vllm"},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "ghcr.io/llm-d/llm-d:v0.2.0",
                            "command": ["vllm", "serve", MODEL, "--port", "8000"],
                        }
                    ],
                },
            }
        ],
        namespace,
    )
    wait_for(lambda: is_ready(separate.pod(namespace, "vllm")), 20, "the pod to run")
    config = yaml.safe_load(separate.kubeconfig.read_text())
    authority = config["clusters"][0]["cluster"]
    context = None
    if "certificate-authority-data" in authority:
        ca = base64.b64decode(authority["certificate-authority-data"]).decode()
        context = ssl.create_default_context(cadata=ca)
    request = raw_stream(separate, f"/api/v1/namespaces/{namespace}/pods/vllm/log?follow=true")
    received: list[str] = []
    ended = threading.Event()

    def read() -> None:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            for line in response:
                received.append(line.decode())
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(
        lambda: any("Application startup complete." in line for line in received),
        20,
        "the startup lines to stream in",
    )
    assert not ended.is_set()
    separate.core.delete_namespaced_pod("vllm", namespace)
    assert ended.wait(20), "the log stream must end when the container stops"
    assert any("Shutting down" in line for line in received)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return clustersim_cli("fault", *args)


def test_fault_cli_adds_lists_and_clears_cluster_faults(separate: SimCluster) -> None:
    info = str(separate.workdir / "agent.json")
    added = run_cli(
        "crash",
        "--info",
        info,
        "--role",
        "decode",
        "--after",
        "30",
        "--error",
        "nixl",
        "--count",
        "2",
    )
    assert added.returncode == 0, added.stderr
    fault = json.loads(added.stdout)["faults"][0]
    assert fault["kind"] == "crash" and fault["match"] == {"role": "decode"}
    assert (fault["error"], fault["count"], fault["after_seconds"]) == ("nixl", 2, 30)
    node = run_cli(
        "node-not-ready",
        "--admin",
        separate.admin_url,
        "--node",
        "nothing-matches",
        "--duration",
        "60",
    )
    assert node.returncode == 0, node.stderr
    listed = json.loads(run_cli("list", "--info", info).stdout)["faults"]
    assert [f["kind"] for f in listed] == ["crash", "node_not_ready"]
    bad = run_cli("capacity", "--info", info, "--resource", "nvidia.com/gpu=lots")
    assert bad.returncode == 1 and "capacity fault resources" in bad.stderr
    assert run_cli("clear", fault["id"], "--info", info).returncode == 0
    assert [f["kind"] for f in json.loads(run_cli("list", "--info", info).stdout)["faults"]] == [
        "node_not_ready"
    ]
    assert run_cli("clear", "--info", info).returncode == 0
    assert json.loads(run_cli("list", "--info", info).stdout)["faults"] == []


def api_admin(kubeconfig: Path, method: str, path: str, body: object = None) -> Any:
    """The API server's own admin endpoint (same port and bearer token)."""
    config = yaml.safe_load(kubeconfig.read_text())
    authority = config["clusters"][0]["cluster"]
    ca = base64.b64decode(authority["certificate-authority-data"]).decode()
    request = urllib.request.Request(
        authority["server"] + "/clustersim/admin" + path,
        method=method,
        data=json.dumps(body or {}).encode(),
        headers={
            "Authorization": f"Bearer {config['users'][0]['user']['token']}",
            "Content-Type": "application/json",
        },
    )
    context = ssl.create_default_context(cadata=ca)
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.loads(response.read())


def pause_pod(name: str, **spec: Any) -> dict[str, Any]:
    """A one-container pod that only runs (the pause image), with `spec` fields added."""
    containers = [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {**spec, "containers": containers},
    }


API_FAULTS = [
    {"kind": "watch-cut", "verbs": ["watch"], "path": "pods", "afterEvents": 2, "count": 20},
    {"kind": "error", "code": 500, "verbs": ["create"], "path": "binding$", "count": 2},
    {
        "kind": "error",
        "code": 429,
        "retryAfterSeconds": 1,
        "verbs": ["patch"],
        "path": "status$",
        "count": 2,
    },
]


def test_agent_rides_out_cut_watches_compaction_and_api_errors(tmp_path: Path) -> None:
    def break_things(kubeconfig: Path) -> None:
        for rule in API_FAULTS:
            api_admin(kubeconfig, "POST", "/faults", rule)

    with server_and_agent(tmp_path, break_things) as cluster:
        namespace = cluster.namespace("resilient")
        api_admin(cluster.kubeconfig, "POST", "/compact")
        cluster.apply([pause_pod("steady")], namespace)
        pod = wait_for(
            lambda: p if is_ready(p := cluster.pod(namespace, "steady")) else None,
            30,
            "the pod to run despite the API faults",
        )
        assert pod["spec"]["nodeName"].startswith("h200-node-")
        # Spent rules leave the list: every injected error was hit, and watches were cut.
        left = {
            f["kind"] + str(f.get("code", "")): f["fired"]
            for f in api_admin(cluster.kubeconfig, "GET", "/faults")["faults"]
        }
        assert "error500" not in left and "error429" not in left
        assert left.get("watch-cut", 20) > 0


def test_a_deleted_pod_goes_even_when_its_last_status_writes_fail(separate: SimCluster) -> None:
    """Graceful deletion ends with the kubelet's last status write and then the pod's removal: a
    500 on that write is retried, and never leaves the pod Terminating (a StatefulSet waits for
    it forever; a rollback under API faults hung so)."""
    namespace = separate.namespace("last-status")
    separate.apply([pause_pod("leaving", terminationGracePeriodSeconds=1)], namespace)
    wait_for(
        lambda: p if is_ready(p := separate.pod(namespace, "leaving")) else None,
        30,
        "the pod to run",
    )
    api_admin(
        separate.kubeconfig, "POST", "/faults",
        {"kind": "error", "code": 500, "verbs": ["patch"],
         "path": f"/namespaces/{namespace}/pods/leaving/status$", "count": 3},
    )
    separate.core.delete_namespaced_pod("leaving", namespace)
    wait_for(
        lambda: separate.pod(namespace, "leaving") is None or None,
        30,
        "the pod to be gone",
    )
    left = api_admin(separate.kubeconfig, "GET", "/faults")["faults"]
    assert not [f for f in left if namespace in str(f.get("path"))], left
