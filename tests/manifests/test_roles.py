"""Each role's LeaderWorkerSet has the spec's shape, and its vLLM script computes the right ranks.

The script keeps the chart's shell arithmetic (`$((LWS_GROUP_SIZE * DP_SIZE_LOCAL))`), so the
tests run it: with the env the pod gets and the LWS_* variables the LWS webhook injects into
each pod of a group, and a stand-in `vllm` that prints the command line it was given.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from manifests import render_role
from spec import ROLES, RoleName, RolloutSpec, load_spec
from spec.loader import validate_document
from tests.manifests.conftest import EXAMPLES, example

SCRIPT_TIMEOUT_SECONDS = 10
ACTIVATE = "/opt/vllm/bin/activate"


def _pod(lws: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    return spec


def _vllm(lws: dict[str, Any]) -> dict[str, Any]:
    (container,) = _pod(lws)["containers"]
    return dict(container)


def _vllm_command_line(
    spec: RolloutSpec, role: RoleName, worker_index: int, tmp_path: Path
) -> list[str]:
    """What `vllm serve` receives in pod `worker_index` of group 0 of the role's LWS."""
    lws = render_role(spec, role)
    container = _vllm(lws)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake_vllm = bin_dir / "vllm"
    fake_vllm.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake_vllm.chmod(fake_vllm.stat().st_mode | stat.S_IXUSR)
    activate = tmp_path / "activate"
    activate.write_text("")
    (script,) = container["args"]
    name = lws["metadata"]["name"]
    namespace = lws["metadata"]["namespace"]
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        # Injected by the LWS webhook into every pod of group 0.
        "LWS_GROUP_SIZE": str(lws["spec"]["leaderWorkerTemplate"]["size"]),
        "LWS_WORKER_INDEX": str(worker_index),
        "LWS_LEADER_ADDRESS": f"{name}-0.{name}.{namespace}",
    }
    env.update({item["name"]: item["value"] for item in container["env"] if "value" in item})
    result = subprocess.run(
        [*container["command"], script.replace(ACTIVATE, str(activate))],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=True,
    )
    return result.stdout.splitlines()


def _option(command_line: list[str], name: str) -> str:
    return command_line[command_line.index(name) + 1]


def test_wide_ep_decode_is_one_group_of_two_four_gpu_pods() -> None:
    lws = render_role(example("wide-ep-lws.yaml"), "decode")
    assert lws["spec"]["replicas"] == 1
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert "leaderTemplate" not in lws["spec"]["leaderWorkerTemplate"]
    resources = _vllm(lws)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "4"
    assert resources["requests"]["nvidia.com/gpu"] == "4"
    env = {item["name"]: item.get("value") for item in _vllm(lws)["env"]}
    assert (env["DP_SIZE_LOCAL"], env["DP_SIZE"], env["TP_SIZE"]) == ("4", "2", "1")


def test_wide_ep_prefill_is_one_eight_gpu_pod_and_sixteen_gpus_in_all() -> None:
    spec = example("wide-ep-lws.yaml")
    prefill = render_role(spec, "prefill")
    assert prefill["spec"]["replicas"] == 1
    assert prefill["spec"]["leaderWorkerTemplate"]["size"] == 1
    assert _vllm(prefill)["resources"]["limits"]["nvidia.com/gpu"] == "8"
    total = 0
    for role in ROLES:
        lws = render_role(spec, role)
        pods = lws["spec"]["replicas"] * lws["spec"]["leaderWorkerTemplate"]["size"]
        total += pods * int(_vllm(lws)["resources"]["limits"]["nvidia.com/gpu"])
    assert total == 16


@pytest.mark.parametrize(("worker_index", "start_rank"), [(0, "0"), (1, "4")])
def test_wide_ep_decode_pods_form_one_data_parallel_group_of_eight(
    worker_index: int, start_rank: str, tmp_path: Path
) -> None:
    command_line = _vllm_command_line(example("wide-ep-lws.yaml"), "decode", worker_index, tmp_path)
    assert command_line[:2] == ["serve", "deepseek-ai/DeepSeek-R1-0528"]
    assert _option(command_line, "--data-parallel-size") == "8"
    assert _option(command_line, "--data-parallel-size-local") == "4"
    assert _option(command_line, "--data-parallel-start-rank") == start_rank
    assert _option(command_line, "--data-parallel-rpc-port") == "5555"
    assert _option(command_line, "--data-parallel-address") == (
        "ms-wide-ep-llm-d-modelservice-decode-0.ms-wide-ep-llm-d-modelservice-decode.llm-d-wide-ep"
    )
    assert _option(command_line, "--port") == "8200"
    assert _option(command_line, "--tensor-parallel-size") == "1"


def test_wide_ep_prefill_pod_is_a_data_parallel_group_of_eight_on_the_pool_port(
    tmp_path: Path,
) -> None:
    command_line = _vllm_command_line(example("wide-ep-lws.yaml"), "prefill", 0, tmp_path)
    assert _option(command_line, "--data-parallel-size") == "8"
    assert _option(command_line, "--data-parallel-size-local") == "8"
    assert _option(command_line, "--data-parallel-start-rank") == "0"
    assert _option(command_line, "--port") == "8000"


def test_as_shipped_decode_group_is_data_parallel_sixteen(tmp_path: Path) -> None:
    spec = example("wide-ep-lws-as-shipped.yaml")
    worker = _vllm_command_line(spec, "decode", 1, tmp_path)
    assert _option(worker, "--data-parallel-size") == "16"
    assert _option(worker, "--data-parallel-start-rank") == "8"


def test_extra_args_reach_vllm_as_separate_quoted_arguments(tmp_path: Path) -> None:
    document = example("wide-ep-lws.yaml").model_dump(mode="json", by_alias=True)
    document["modelService"]["prefill"]["extraArgs"] = ["--max-model-len", "8192", "--seed=$HOME x"]
    spec = validate_document(document)
    command_line = _vllm_command_line(spec, "prefill", 0, tmp_path)
    assert command_line[-3:] == ["--max-model-len", "8192", "--seed=$HOME x"]


def test_only_decode_pods_run_the_routing_sidecar_in_front_of_vllm() -> None:
    spec = example("wide-ep-lws.yaml")
    assert "initContainers" not in _pod(render_role(spec, "prefill"))
    (sidecar,) = _pod(render_role(spec, "decode"))["initContainers"]
    assert sidecar["name"] == "routing-proxy"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["ports"] == [{"containerPort": 8000}]
    assert "--port=8000" in sidecar["args"] and "--vllm-port=8200" in sidecar["args"]


def test_startup_probe_waits_the_model_load_budget_on_vllms_own_port() -> None:
    spec = example("wide-ep-lws.yaml")
    assert spec.budgets.model_load.total_seconds() == 1800
    ports: dict[RoleName, int] = {"decode": 8200, "prefill": 8000}
    for role, port in ports.items():
        container = _vllm(render_role(spec, role))
        assert container["startupProbe"] == {
            "httpGet": {"path": "/health", "port": port},
            "periodSeconds": 10,
            "failureThreshold": 180,
        }
        assert container["readinessProbe"] == {
            "httpGet": {"path": "/health", "port": port},
            "periodSeconds": 10,
        }


def test_startup_probe_threshold_rounds_the_budget_up() -> None:
    document = load_spec(EXAMPLES / "demo.yaml").model_dump(mode="json", by_alias=True)
    document["budgets"]["modelLoad"] = "95s"
    container = _vllm(render_role(validate_document(document), "decode"))
    assert container["startupProbe"]["failureThreshold"] == 10


def test_as_shipped_pods_have_no_probes_like_upstream() -> None:
    spec = example("wide-ep-lws-as-shipped.yaml")
    for role in ROLES:
        container = _vllm(render_role(spec, role))
        assert "startupProbe" not in container and "readinessProbe" not in container


def test_lws_defaults_leave_the_rollout_strategy_to_the_webhook() -> None:
    lws = render_role(example("wide-ep-lws.yaml"), "decode")
    assert "rolloutStrategy" not in lws["spec"]


def test_a_canary_partition_and_a_surge_strategy_are_rendered() -> None:
    document = example("wide-ep-lws.yaml").model_dump(mode="json", by_alias=True)
    document["strategy"]["decode"] = {"maxUnavailable": 0, "maxSurge": 1}
    spec = validate_document(document)
    assert render_role(spec, "decode")["spec"]["rolloutStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1},
    }
    canary = render_role(spec, "prefill", partition=1)
    assert canary["spec"]["rolloutStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0, "partition": 1},
    }


def test_node_affinity_comes_from_the_accelerator_or_the_role() -> None:
    document = example("wide-ep-lws.yaml").model_dump(mode="json", by_alias=True)
    term = {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["decode"]}]}
    own = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
    document["modelService"]["decode"]["nodeAffinity"] = own
    document["modelService"]["accelerator"] = None
    spec = validate_document(document)
    assert _pod(render_role(spec, "decode"))["affinity"] == {"nodeAffinity": own}
    assert "affinity" not in _pod(render_role(spec, "prefill"))
