"""Fixtures of the activity tests: a simulated cluster (clustersim) over real HTTPS on loopback.

`kube_api` is clustersim's API server alone (objects, watches, apply; no controllers): enough for
apply, snapshot, restore and watch tests. `cluster` is API server plus cluster agent
(`python -m clustersim up`, profile h200-2node, time scale 0.01: a simulated second lasts 10 ms),
for waits that need controllers, kubelets and fake vLLM servers. Both come from the suite's one
cluster factory (tests/simcluster.py), live for the session and are stopped by PID at its end.
"""

from __future__ import annotations

from pathlib import Path

# The test modules here name the fixtures' type through this conftest.
from tests.simcluster import SimCluster as SimCluster
from tests.simcluster import sim_cluster_fixture

REPO = Path(__file__).resolve().parents[2]
TIME_SCALE = 0.01

kube_api = sim_cluster_fixture("kube-api", scope="session", agent=False)
cluster = sim_cluster_fixture("cluster", scope="session", time_scale=TIME_SCALE)
