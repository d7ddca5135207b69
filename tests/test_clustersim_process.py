"""The process wrapper the demo, the tests and the benchmarks run clustersim through
(embedded.clustersim_process): the API server alone, fault commands, and the failure paths.

The full `up` (server + agent) path is exercised by every e2e, CLI and activity test that uses a
cluster (tests/simcluster.py); these are the cheap cases, one API server each.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from embedded.clustersim_process import ClusterSimError, ClusterSimProcess

# Each `python -m clustersim fault` is a Python start: a few seconds for the module.
pytestmark = pytest.mark.slow


async def test_the_api_server_alone_serves_and_takes_api_faults(tmp_path: Path) -> None:
    async with ClusterSimProcess(tmp_path, agent=False) as sim:
        info = sim.info
        kubeconfig = yaml.safe_load(sim.kubeconfig_path.read_text())
        assert info.api_url == kubeconfig["clusters"][0]["cluster"]["server"]
        assert info.api_url.startswith("https://127.0.0.1:")
        assert info.kubeconfig == sim.kubeconfig_path
        assert info.admin_url is None
        assert sim.pid is not None

        sim.fault("api", "add", "--error", "503", "--verb", "get", "--count", "2")
        rules = json.loads(sim.fault("api", "list"))
        sim.fault("api", "clear")
        cleared = json.loads(sim.fault("api", "list"))

        with pytest.raises(ClusterSimError, match="needs the cluster agent"):
            sim.fault("crash", "--image", "x")
    assert sim.pid is None
    assert [(rule["kind"], rule["code"]) for rule in rules["faults"]] == [("error", 503)]
    assert cleared["faults"] == []


async def test_a_refused_fault_command_raises_with_clustersims_message(tmp_path: Path) -> None:
    async with ClusterSimProcess(tmp_path, agent=False) as sim:
        # A rule bounded by neither a count nor a duration is refused by the server (400).
        with pytest.raises(ClusterSimError, match="exited with") as refused:
            sim.fault("api", "add", "--error", "503")
    assert "count" in str(refused.value) or "duration" in str(refused.value)


async def test_a_cluster_that_cannot_start_says_why_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    sim = ClusterSimProcess(
        tmp_path, profile="no-such-profile", startup_timeout=timedelta(seconds=60)
    )
    with pytest.raises(ClusterSimError, match="exited with code") as failed:
        await sim.start()
    assert "no-such-profile" in str(failed.value)
    assert sim.pid is None


async def test_fault_before_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ClusterSimError, match="has not been started"):
        ClusterSimProcess(tmp_path).fault("crash", "--image", "x")
