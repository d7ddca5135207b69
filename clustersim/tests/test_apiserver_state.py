"""`serve --state FILE`: the cluster survives a SIGTERM and restart; the CLI's own contract."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

from apiserver_process import clustersim_cli, start_server, stop_process
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from clustersim.apiserver import ApiServer, ApiServerConfig

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "default": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_state_file_survives_sigterm_and_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    process, kubeconfig = start_server(tmp_path / "first", "--state", str(state))
    try:
        api = k8s_config.new_client_from_config(str(kubeconfig))
        core = k8s.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "kept"}})
        core.create_namespaced_config_map("kept", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
        service = core.create_namespaced_service(
            "kept", {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
        )
        k8s.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)
        custom = k8s.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "example.com",
            "v1",
            "kept",
            "widgets",
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {},
            },
        )
        last = int(core.read_namespaced_config_map("cm", "kept").metadata.resource_version)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    saved = json.loads(state.read_text())
    assert saved["resourceVersion"] >= last

    process, kubeconfig = start_server(tmp_path / "second", "--state", str(state))
    try:
        api = k8s_config.new_client_from_config(str(kubeconfig))
        core = k8s.CoreV1Api(api)
        assert core.read_namespaced_config_map("cm", "kept").data == {"k": "v"}
        widget = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            "example.com", "v1", "kept", "widgets", "w"
        )
        assert widget["spec"] == {"size": 1}
        again = core.create_namespaced_service(
            "kept", {"metadata": {"name": "other"}, "spec": {"ports": [{"port": 80}]}}
        )
        assert again.spec.cluster_ip != service.spec.cluster_ip
        fresh = core.create_namespaced_config_map("kept", {"metadata": {"name": "new"}})
        assert int(fresh.metadata.resource_version) > saved["resourceVersion"]
    finally:
        stop_process(process)


def test_port_zero_picks_a_free_port_written_to_the_kubeconfig(tmp_path: Path) -> None:
    process, kubeconfig = start_server(tmp_path)
    try:
        config = k8s_config.new_client_from_config(str(kubeconfig)).configuration
        assert config.host.startswith("https://127.0.0.1:")
        assert not config.host.endswith(":0")
        version = k8s.VersionApi(k8s_config.new_client_from_config(str(kubeconfig)))
        assert version.get_code().minor == "35"
    finally:
        stop_process(process)


def test_serve_help_lists_the_documented_options() -> None:
    result = clustersim_cli("serve", "--help", timeout=30)
    assert result.returncode == 0
    for option in ("--port", "--kubeconfig-out", "--state", "--token-file", "--insecure-http"):
        assert option in result.stdout


async def test_quantities_in_an_older_state_file_are_normalised_on_load(tmp_path: Path) -> None:
    """State files written before quantities were normalised hold numbers; after loading,
    typed clients read them and status writes do not trip the pod spec's immutability."""
    state = tmp_path / "state.json"
    pod = {
        "metadata": {"name": "old"},
        "spec": {"containers": [{"name": "vllm", "image": "vllm:1", "resources": {
            "requests": {"cpu": "32", "rdma/ib": "1"}}}]},
    }

    def in_thread(server: ApiServer, work: Any) -> Any:
        api = k8s_config.new_client_from_config(str(server.kubeconfig_path))
        return asyncio.get_running_loop().run_in_executor(None, work, k8s.CoreV1Api(api))

    first = ApiServer(ApiServerConfig(data_dir=tmp_path / "first", state_file=state))
    await first.start()
    try:
        await in_thread(first, lambda core: core.create_namespaced_pod("default", pod))
    finally:
        await first.stop()
    # as an older server stored them
    saved = json.loads(state.read_text())
    for resource in saved["resources"]:
        for obj in resource["objects"]:
            if obj["kind"] == "Pod":
                obj["spec"]["containers"][0]["resources"]["requests"] = {"cpu": 32, "rdma/ib": 1}
    state.write_text(json.dumps(saved))

    def check(core: k8s.CoreV1Api) -> None:
        read = core.read_namespaced_pod("old", "default")
        assert read.spec.containers[0].resources.requests == {"cpu": "32", "rdma/ib": "1"}
        patched = core.patch_namespaced_pod_status(
            "old", "default", {"status": {"phase": "Running"}}
        )
        assert patched.status.phase == "Running"

    second = ApiServer(ApiServerConfig(data_dir=tmp_path / "second", state_file=state))
    await second.start()
    try:
        await in_thread(second, check)
    finally:
        await second.stop()
