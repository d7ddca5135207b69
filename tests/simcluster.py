"""The one simulated cluster of the product's tests: a running clustersim and a fixture factory.

Every product test that needs a cluster gets it from here, and this module runs clustersim only
through the product's process wrapper (embedded.clustersim_process.ClusterSimProcess), as the demo
does: `python -m clustersim up` (API server + agent: nodes, controllers, kubelets, fake vLLM) or,
with `agent=False`, `python -m clustersim serve` (the API server alone: objects, watches, apply,
API faults). The process is stopped by PID when the `async with` block or the fixture's scope
ends. clustersim's own tests (clustersim/tests) do not import this: they never import the product.

    sim = sim_cluster_fixture("sim-install", scope="module", time_scale=0.005)

    async with running_sim_cluster(workdir, time_scale=0.01) as cluster:
        cluster.fault("crash", "--image", image, "--count", "1000")
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import pytest_asyncio
import yaml

from embedded.clustersim_process import DEFAULT_PROFILE, ClusterSimInfo, ClusterSimProcess
from k8s import KubeClient
from spec.rollout import Target

# API faults the tests add stop firing after this long unless the test bounds them itself.
API_FAULT_DEFAULT_SECONDS = "120"

FixtureScope = Literal["session", "package", "module", "class", "function"]


@dataclass(frozen=True)
class SimCluster:
    """A running clustersim: where its kubeconfig is, how to reach it, how to break it."""

    process: ClusterSimProcess

    @property
    def kubeconfig(self) -> Path:
        return self.process.kubeconfig_path

    @property
    def workdir(self) -> Path:
        return self.process.workdir

    @property
    def info(self) -> ClusterSimInfo:
        return self.process.info

    def target(self, namespace: str) -> Target:
        return Target(cluster="clustersim", namespace=namespace, kubeconfig=str(self.kubeconfig))

    def client(self) -> KubeClient:
        return KubeClient.for_target(self.target("default"))

    def fault(self, kind: str, *args: str) -> str:
        """`python -m clustersim fault KIND ARGS` against this cluster (a cluster fault through
        the agent, or `list`/`clear`); raises ClusterSimError, naming stderr, when it fails."""
        return self.process.fault(kind, *args)

    def api_fault(self, *args: str) -> None:
        """Add an API fault rule (`fault api add ARGS`, bounded to two minutes unless ARGS bound
        it), or `clear` them all, or `compact` the watch history."""
        if args in (("clear",), ("compact",)):
            action = list(args)
        else:
            bounded = "--count" in args or "--duration" in args
            action = [
                "add", *args, *([] if bounded else ["--duration", API_FAULT_DEFAULT_SECONDS])
            ]
        self.process.fault("api", *action)


PROFILES = (
    Path(__file__).resolve().parents[1] / "clustersim" / "src" / "clustersim" / "agent" / "profiles"
)


def nodes_profile(workdir: Path, nodes: int) -> str:
    """h200-2node with `nodes` nodes (8 GPUs each), written beside the cluster's data."""
    profile = yaml.safe_load((PROFILES / "h200-2node.yaml").read_text())
    profile["name"] = f"h200-{nodes}node"
    profile["nodes"][0]["count"] = nodes
    path = workdir / f"h200-{nodes}node.yaml"
    path.write_text(yaml.safe_dump(profile))
    return str(path)


@contextlib.asynccontextmanager
async def running_sim_cluster(
    workdir: Path,
    *,
    time_scale: float,
    profile: str = DEFAULT_PROFILE,
    agent: bool = True,
) -> AsyncIterator[SimCluster]:
    """A clustersim in `workdir` (kubeconfig, info file, log `clustersim.log`) for the block."""
    async with ClusterSimProcess(
        workdir, profile=profile, time_scale=time_scale, agent=agent
    ) as process:
        yield SimCluster(process)


def sim_cluster_fixture(
    workdir_name: str,
    *,
    scope: FixtureScope,
    time_scale: float = 1.0,
    profile: str = DEFAULT_PROFILE,
    agent: bool = True,
) -> Callable[..., Any]:
    """A pytest fixture yielding a SimCluster for `scope`; assign it to the fixture's name.

    `time_scale` is wall seconds per simulated second (0.01: a 480 s model load takes 4.8 s);
    it does not matter with `agent=False`, where nothing is simulated in time.
    """

    @pytest_asyncio.fixture(scope=scope, loop_scope="session")
    async def sim_cluster(
        tmp_path_factory: pytest.TempPathFactory,
    ) -> AsyncIterator[SimCluster]:
        async with running_sim_cluster(
            tmp_path_factory.mktemp(workdir_name),
            time_scale=time_scale, profile=profile, agent=agent,
        ) as cluster:
            yield cluster

    return sim_cluster
