"""End to end: many targets, one cluster, against clustersim with the real activities.

Targets started together share one ClusterWorkflow, the one writer of the cluster-wide pieces:
both of two simultaneous rollouts succeed with one helm install of each shared release; a second
rollout started while the first one's shared install is slowed waits and uninstalls nothing;
teardown keeps what another target uses and the last user removes it; ten rollouts together on
an empty cluster all succeed; fifty on exactly enough GPUs each succeed or are refused at
preflight; one whose spec waits for capacity waits until another stack is torn down. Each
cluster gets its own `target.cluster` name, so its cluster workflow is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client, WorkflowHandle

from cli.exit_codes import ExitCode, for_result
from embedded.temporal import TemporalDevServer
from rollouts import rollout_result, start_rollout, start_teardown
from spec.cluster_io import cluster_workflow_id
from spec.reasons import FailureReason
from spec.rollout import RolloutSpec
from spec.workflow_io import Outcome, Phase, RolloutResult, StepStatus, TeardownInput
from tests.simcluster import SimCluster, nodes_profile, running_sim_cluster
from tests.workflows.e2e import TIME_SCALE, VENV_BIN, WorkerProcess, sim_spec
from tests.workflows.specs import Change
from workflows.cluster import ClusterWorkflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.long]

ROLLOUT_TIMEOUT = 300.0
@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimCluster]:
    """Room for two demo stacks (32 GPUs)."""
    workdir = tmp_path_factory.mktemp("sim-pair")
    async with sim_cluster(workdir, nodes_profile(workdir, 4)) as cluster:
        yield cluster


def sim_cluster(
    workdir: Path, profile: str, time_scale: float = TIME_SCALE
) -> AbstractAsyncContextManager[SimCluster]:
    return running_sim_cluster(workdir, time_scale=time_scale, profile=profile)


# Fifty cold rollouts keep both cores of the test machine busy for a minute, and every second a
# simulated controller waits for CPU is 1/time-scale simulated seconds. At the suite's 0.005 the
# EPP Deployment's 600 s progress deadline is 3 wall seconds, which that wait alone exceeded
# (ProgressDeadlineExceeded), where a real kubelet is not slowed by the control plane's load.
# At 0.02 the deadline is 12 wall seconds.
LOADED_TIME_SCALE = 0.02


def whole_node_decode(document: dict[str, Any]) -> None:
    """One decode group of one 8-GPU pod."""
    decode = document["modelService"]["decode"]
    decode.update({"replicas": 1, "groupSize": 1, "dataParallelLocal": 8, "gpusPerPod": 8})
    for env in decode["env"]:
        if env["name"] == "DP_SIZE_LOCAL":
            env["value"] = "8"


def on(sim: SimCluster, cluster: str, name: str, *changes: Change) -> RolloutSpec:
    """The demo stack as target `<cluster>/<name>/<name>`: a namespace of its own, so its own
    releases (infra, model service) are its alone; only the cluster-wide pieces are shared."""

    def named(document: dict[str, Any]) -> None:
        document["target"]["cluster"] = cluster
        document["target"]["namespace"] = name
        rule = document["infra"]["values"]["gateway"]["destinationRule"]
        rule["host"] = rule["host"].replace(".llm-d-wide-ep.", f".{name}.")

    return sim_spec(name, sim, named, *changes)


def whole_node_stacks(sim: SimCluster, cluster: str, count: int) -> list[RolloutSpec]:
    """`count` demo stacks of whole-node pods on `cluster`, each in a namespace of its own."""
    return [on(sim, cluster, f"{cluster}-{index}", whole_node_decode) for index in range(count)]


def helm_history(sim: SimCluster, release: str, namespace: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(VENV_BIN / "helm"), "history", release, "-n", namespace, "-o", "yaml",
         "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if done.returncode != 0:
        assert "not found" in done.stderr, done.stderr
        return []
    history: list[dict[str, Any]] = yaml.safe_load(done.stdout)
    return history


async def together(
    client: Client, task_queue: str, specs: list[RolloutSpec]
) -> list[RolloutResult]:
    handles = await asyncio.gather(
        *(start_rollout(client, spec, task_queue=task_queue) for spec in specs)
    )
    return await finished(handles)


async def finished(handles: list[WorkflowHandle[Any, Any]]) -> list[RolloutResult]:
    return list(
        await asyncio.gather(
            *(asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT) for handle in handles)
        )
    )


def step_detail(result: RolloutResult, name: str) -> str:
    return next(s.detail for s in result.steps if s.name == name)


async def test_two_targets_started_at_once_both_succeed_with_one_install_each(
    client: Client, real_worker: str, pair: SimCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    specs = [on(pair, "pair", "twin-a"), on(pair, "pair", "twin-b")]

    results = await together(client, real_worker, specs)

    assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * 2, [r.failure for r in results]
    for release, namespace in (("lws", "lws-system"), ("istiod", "istio-system")):
        history = helm_history(pair, release, namespace)
        assert [(h["revision"], h["status"]) for h in history] == [(1, "deployed")], history
    lws = sorted(step_detail(r, "lws-controller") for r in results)
    assert lws[0].startswith("already current"), lws
    assert lws[1].startswith("installed, revision 1"), lws
    installs = [
        r.getMessage() for r in caplog.records
        if r.name == "temporalio.workflow" and "helm/lws-system/lws: installed" in r.getMessage()
    ]
    assert len(installs) == 1, installs


async def test_teardown_keeps_shared_pieces_for_the_other_target_and_the_last_removes_them(
    client: Client, real_worker: str, pair: SimCluster
) -> None:
    everything = {"include_dependencies": True, "include_gateway_provider": True}
    first = await (
        await start_teardown(
            client, TeardownInput(spec=on(pair, "pair", "twin-a"), **everything),
            task_queue=real_worker,
        )
    ).result()
    assert first.outcome == Outcome.REMOVED
    assert any("kept: still used by pair/twin-b/twin-b" in k for k in first.kept), first.kept
    assert helm_history(pair, "lws", "lws-system") != []

    last = await (
        await start_teardown(
            client, TeardownInput(spec=on(pair, "pair", "twin-b"), **everything),
            task_queue=real_worker,
        )
    ).result()
    assert last.outcome == Outcome.REMOVED
    shared = next(s for s in last.steps if s.name == "shared-pieces")
    assert shared.status == StepStatus.CHANGED
    assert helm_history(pair, "lws", "lws-system") == []
    assert helm_history(pair, "istiod", "istio-system") == []
    for namespace in ("lws-system", "istio-system"):
        assert f"namespace {namespace} deleted" in shared.detail, shared.detail


async def test_a_second_target_waits_for_a_slowed_shared_install_and_nothing_is_uninstalled(
    client: Client, real_worker: str, pair: SimCluster
) -> None:
    # Every API request about the LWS controller's namespace is slowed while the first installs.
    pair.api_fault("--latency-ms", "300", "--path", "lws-system", "--duration", "60")
    try:
        first = await start_rollout(client, on(pair, "pair", "slow-a"), task_queue=real_worker)
        cluster = client.get_workflow_handle(cluster_workflow_id("pair", real_worker))
        for _ in range(600):
            running = await cluster.query(ClusterWorkflow.operations)
            if "helm/lws-system/lws" in running:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the first target's LWS install never started")
        second = await start_rollout(client, on(pair, "pair", "slow-b"), task_queue=real_worker)
        results = await finished([first, second])
    finally:
        pair.api_fault("clear")

    assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * 2, [r.failure for r in results]
    history = helm_history(pair, "lws", "lws-system")
    assert [(h["revision"], h["status"]) for h in history] == [(1, "deployed")], history
    for result in results:
        assert "repaired" not in step_detail(result, "lws-controller")


async def test_ten_targets_started_together_on_an_empty_cluster_all_succeed(
    client: Client, real_worker: str, tmp_path: Path
) -> None:
    # Whole-node pods (one 8-GPU prefill pod, one 8-GPU decode pod per target): 160 GPUs on 20
    # nodes, and the default scheduler's spreading cannot strand a pod of any target.
    async with sim_cluster(tmp_path, nodes_profile(tmp_path, 20)) as sim:
        results = await together(client, real_worker, whole_node_stacks(sim, "ten", 10))

        failures = [r.failure for r in results if r.outcome != Outcome.SUCCEEDED]
        assert failures == []
        assert [h["revision"] for h in helm_history(sim, "lws", "lws-system")] == [1]


@pytest.mark.scale
async def test_fifty_rollouts_on_exactly_enough_gpus_each_succeed_or_are_refused_at_preflight(
    client: Client, real_worker: str, tmp_path: Path
) -> None:
    # Fifty whole-node stacks (an 8-GPU prefill pod, an 8-GPU decode pod) on 100 nodes: exactly
    # enough GPUs. Before capacity was held, 12 of 50 passed preflight and their pods stayed
    # Pending; now each rollout places and holds its pods, or is refused before it creates any.
    profile = nodes_profile(tmp_path, 100)
    async with sim_cluster(tmp_path, profile, LOADED_TIME_SCALE) as sim:
        results = await together(client, real_worker, whole_node_stacks(sim, "fifty", 50))

        wrong = [
            (r.target, r.outcome, r.failure)
            for r in results
            if r.outcome != Outcome.SUCCEEDED
            and not (
                r.failure is not None
                and r.failure.reason == FailureReason.INSUFFICIENT_CAPACITY
                and r.failure.phase == Phase.PREFLIGHT
            )
        ]
        assert wrong == []
        assert not [p for p in pods(sim) if p["status"].get("phase") == "Pending"]
        cluster = client.get_workflow_handle(cluster_workflow_id("fifty", real_worker))
        view = await cluster.query(ClusterWorkflow.reservations)
        assert view.reservations == []


def pods(sim: SimCluster) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(VENV_BIN / "kubectl"), "get", "pods", "-A", "-o", "json",
         "--kubeconfig", str(sim.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    items: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    return items


async def test_two_rollouts_that_fit_alone_but_not_together_one_is_refused_at_preflight(
    client: Client, real_worker: str, tmp_path: Path
) -> None:
    # 24 GPUs on three nodes; each demo stack asks 16 (an 8-GPU prefill pod, two 4-GPU pods).
    async with sim_cluster(tmp_path, "h200-3node") as sim:
        specs = [on(sim, "trio", "first-come"), on(sim, "trio", "second-come")]
        results = await together(client, real_worker, specs)

        outcomes = sorted(r.outcome for r in results)
        assert outcomes == sorted([Outcome.SUCCEEDED, Outcome.FAILED]), [
            r.failure for r in results
        ]
        refused = next(r for r in results if r.outcome == Outcome.FAILED)
        assert refused.failure is not None
        assert refused.failure.reason == FailureReason.INSUFFICIENT_CAPACITY
        assert refused.failure.phase == Phase.PREFLIGHT
        assert for_result(refused) == ExitCode.REFUSED
        assert "needs a node with" in refused.failure.message or (
            "insufficient capacity" in refused.failure.message
        ), refused.failure.message
        refused_namespace = refused.target.split("/")[1]
        everything = pods(sim)
        assert not [p for p in everything if p["metadata"]["namespace"] == refused_namespace]
        assert not [p for p in everything if p["status"].get("phase") == "Pending"]
        # Its hold ended with it: the cluster workflow holds nothing now.
        cluster = client.get_workflow_handle(cluster_workflow_id("trio", real_worker))
        view = await cluster.query(ClusterWorkflow.reservations)
        assert view.reservations == []


def capacity_wait(duration: str) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["budgets"]["capacityWait"] = duration

    return change


async def waiting_for_capacity(client: Client, handle: WorkflowHandle[Any, Any]) -> str:
    """The heartbeat of `handle`'s capacity hold once it says it waits for capacity."""
    for _ in range(1200):
        described = await handle.describe()
        for pending in described.raw_description.pending_activities:
            if pending.activity_type.name != "hold_capacity":
                continue
            for payload in pending.heartbeat_details.payloads:
                step = str(json.loads(payload.data).get("step", ""))
                if step.startswith("waiting for capacity"):
                    return step
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never waited for capacity")


async def test_a_rollout_that_may_wait_for_capacity_proceeds_once_the_gpus_are_freed(
    client: Client, real_worker: str, tmp_path: Path
) -> None:
    """24 GPUs on three nodes, 16 per stack. The second stack, whose spec waits up to 5m for
    capacity, waits at preflight while the first one's pods use the GPUs, creating nothing;
    a third that waits 2s is refused after it (exit 5); the first is torn down, and the second
    proceeds and succeeds, saying how long it waited."""
    async with sim_cluster(tmp_path, "h200-3node") as sim:
        [first] = await together(client, real_worker, [on(sim, "queue", "first-in")])
        assert first.outcome == Outcome.SUCCEEDED, first.failure

        waiting = await start_rollout(
            client, on(sim, "queue", "waits", capacity_wait("5m")), task_queue=real_worker
        )
        step = await waiting_for_capacity(client, waiting)
        assert "needs a node with" in step, step
        [gave_up] = await together(
            client, real_worker, [on(sim, "queue", "gives-up", capacity_wait("2s"))]
        )
        assert gave_up.failure is not None
        assert gave_up.failure.reason == FailureReason.INSUFFICIENT_CAPACITY
        assert "s for it (budgets.capacityWait)" in gave_up.failure.message, gave_up.failure
        assert for_result(gave_up) == ExitCode.REFUSED
        namespaces = {p["metadata"]["namespace"] for p in pods(sim)}
        assert "waits" not in namespaces and "gives-up" not in namespaces

        removed = await (
            await start_teardown(
                client, TeardownInput(spec=on(sim, "queue", "first-in")), task_queue=real_worker
            )
        ).result()
        assert removed.outcome == Outcome.REMOVED
        [proceeded] = await finished([waiting])

        assert proceeded.outcome == Outcome.SUCCEEDED, proceeded.failure
        assert "for capacity" in step_detail(proceeded, "hold-capacity")
        assert not [p for p in pods(sim) if p["status"].get("phase") == "Pending"]


async def test_worker_killed_during_the_shared_install_the_operation_completes_once(
    temporal_server: TemporalDevServer, client: Client, tmp_path: Path
) -> None:
    """SIGKILL the only worker while the cluster workflow's LWS install (asked by two targets)
    runs; a new worker finishes it: one deployed revision, both targets succeed."""
    task_queue = f"multi-kill-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path / "sim"
    async with sim_cluster(workdir, nodes_profile(tmp_path, 4)) as sim:
        sim.api_fault("--latency-ms", "200", "--path", "lws-system", "--duration", "60")
        worker = WorkerProcess(temporal_server.address, task_queue, tmp_path / "worker.log")
        worker.start()
        try:
            specs = [on(sim, "kill", "killed-a"), on(sim, "kill", "killed-b")]
            handles = [await start_rollout(client, s, task_queue=task_queue) for s in specs]
            cluster = client.get_workflow_handle(cluster_workflow_id("kill", task_queue))
            for _ in range(1200):
                with contextlib.suppress(Exception):
                    running = await cluster.query(ClusterWorkflow.operations)
                    if len(running.get("helm/lws-system/lws", [])) == 2:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the two asks never met on the LWS install")
            await asyncio.sleep(1.0)  # helm is running now (each API call takes 200 ms)
            worker.kill()
            sim.api_fault("clear")
            worker.start()
            results = await finished(handles)
        finally:
            worker.stop()

        assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * 2, [r.failure for r in results]
        history = helm_history(sim, "lws", "lws-system")
        assert [h["status"] for h in history] == ["deployed"], history
        details = sorted(step_detail(r, "lws-controller") for r in results)
        assert details[0].startswith("already current"), details
        assert details[1].startswith("installed, revision 1"), details


def explicit_lws_values(document: dict[str, Any]) -> None:
    """The LWS release with values of its own: another version of the shared piece."""
    document["dependencies"]["leaderWorkerSet"]["release"]["values"] = {
        "controllerVersion": "0.7.0"
    }


async def test_a_cluster_created_again_under_its_name_is_not_held_to_the_deleted_ones(
    client: Client, real_worker: str, tmp_path: Path
) -> None:
    # A dev cluster deleted and created again keeps its `target.cluster` name, not its
    # kube-system UID. Before, the cluster workflow still counted the deleted cluster's target
    # as the LWS release's user and refused the new cluster's other version of it.
    async with sim_cluster(tmp_path / "deleted", nodes_profile(tmp_path, 2)) as deleted:
        (before,) = await together(client, real_worker, [on(deleted, "again", "gone")])
        assert before.outcome == Outcome.SUCCEEDED, before.failure

    async with sim_cluster(tmp_path / "created", nodes_profile(tmp_path, 2)) as created:
        spec = on(created, "again", "fresh", explicit_lws_values)
        (after,) = await together(client, real_worker, [spec])

        assert after.outcome == Outcome.SUCCEEDED, after.failure
        assert step_detail(after, "lws-controller").startswith("installed, revision 1")
        cluster = client.get_workflow_handle(cluster_workflow_id("again", real_worker))
        users = await cluster.query(ClusterWorkflow.users)
        assert users["helm/lws-system/lws"] == ["again/fresh/fresh"], users
