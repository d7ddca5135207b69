"""ClusterWorkflow with the stand-in activities: one writer of the shared pieces per cluster.

Several targets on one fake cluster (one task queue, so one `cluster/<queue>/clustersim`): asks
for the same version coalesce into one helm operation, an ask for another version than a live
target uses is refused before anything changes, teardown keeps what another target still uses,
and the workflow continues as new with everything it knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from activities.cluster import CLUSTER_TASK_TIMEOUT
from rollouts import rollout_result, start_rollout, start_teardown
from spec.cluster_io import (
    AskStatus,
    ClusterInput,
    ClusterReads,
    EnsureAsk,
    FreeAsk,
    Reservation,
    ReserveAnswer,
    ReserveAsk,
    StandingAsk,
    cluster_workflow_id,
)
from spec.reasons import FailureReason
from spec.workflow_io import (
    Outcome,
    PauseRequest,
    Phase,
    ResumeRequest,
    RunState,
    StepStatus,
    TeardownInput,
)
from tests.workflows.fakes import FakeCluster, Fault
from tests.workflows.scenarios import WAIT, query, run_rollout, until
from tests.workflows.specs import demo_spec
from workflows import shared_pieces
from workflows.cluster import ClusterWorkflow
from workflows.plan import plan_rollout
from workflows.progress import MILESTONES_BEFORE, milestones
from workflows.rollout import RolloutWorkflow
from workflows.shared_pieces import dependency_pieces

CLUSTER = "clustersim"  # the demo spec's target.cluster


def lws_values(**values: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        document["dependencies"]["leaderWorkerSet"]["release"]["values"] = values

    return change


def cluster_handle(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(cluster_workflow_id(CLUSTER, task_queue))


async def pending(client: Client, workflow_id: str, activity_type: str) -> None:
    """Until `workflow_id` has `activity_type` pending (its ask is out)."""
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(300):
        described = await handle.describe()
        running = described.raw_description.pending_activities
        if any(a.activity_type.name == activity_type for a in running):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never asked ({activity_type})")


def step(result: Any, name: str) -> Any:
    return next(s for s in result.steps if s.name == name)


async def test_two_targets_at_once_share_one_install_of_each_piece(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    held = fake_cluster.hold("helm_upgrade_install")
    first = await start_rollout(temporal_client, demo_spec("twin-a"), task_queue=fake_worker)
    await pending(temporal_client, first.id, "ensure_shared_pieces")
    # The second target asks while the first one's LWS install is still running.
    second = await start_rollout(temporal_client, demo_spec("twin-b"), task_queue=fake_worker)
    cluster = cluster_handle(temporal_client, fake_worker)
    for _ in range(300):
        # Not found: the first ask's activity is out but has not started the workflow yet.
        with contextlib.suppress(RPCError):
            waiting = await cluster.query(ClusterWorkflow.operations)
            if len(waiting.get("helm/lws-system/lws", [])) == 2:
                break
        await asyncio.sleep(0.05)
    held.set()
    results = await asyncio.gather(
        asyncio.wait_for(rollout_result(first), WAIT),
        asyncio.wait_for(rollout_result(second), WAIT),
    )

    assert all(r.outcome == Outcome.SUCCEEDED for r in results), [r.failure for r in results]
    # One helm operation per shared release, whatever the number of asking targets.
    assert fake_cluster.names("helm_upgrade_install:lws") == ["helm_upgrade_install:lws"]
    assert fake_cluster.names("helm_upgrade_install:istiod") == ["helm_upgrade_install:istiod"]
    assert fake_cluster.helm_revision("lws") == 1
    lws = sorted(step(r, "lws-controller").detail for r in results)
    assert lws[0].startswith("already current: made current for clustersim/llm-d-wide-ep/twin-a")
    assert lws[1].startswith("installed, revision 1")
    statuses = sorted(step(r, "lws-controller").status for r in results)
    assert statuses == sorted([StepStatus.CHANGED, StepStatus.UNCHANGED])
    users = await cluster.query(ClusterWorkflow.users)
    assert users["helm/lws-system/lws"] == [
        "clustersim/llm-d-wide-ep/twin-a", "clustersim/llm-d-wide-ep/twin-b",
    ]


async def test_another_version_of_a_piece_a_live_target_uses_is_refused_before_any_change(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    first = await run_rollout(temporal_client, demo_spec("keeper"), fake_worker)
    assert first.outcome == Outcome.SUCCEEDED, first.failure
    fake_cluster.calls.clear()

    other = await run_rollout(
        temporal_client, demo_spec("newcomer", lws_values(replicas=3)), fake_worker
    )

    assert other.outcome == Outcome.FAILED
    assert other.failure is not None and other.failure.phase == Phase.DEPENDENCIES
    message = other.failure.message
    assert "LWS controller release lws-system/lws is shared" in message
    used = re.search(r"target clustersim/llm-d-wide-ep/keeper uses (\S+ \(values \w+\))", message)
    asked = re.search(r"target clustersim/llm-d-wide-ep/newcomer\) asks for (\S+ \(values \w+\))",
                      message)
    assert used and asked and used.group(1) != asked.group(1), message
    assert not fake_cluster.names("helm_upgrade_install")
    assert not fake_cluster.names("apply_crds")
    # The same change by the only user is an upgrade, not a conflict.
    fake_cluster.calls.clear()
    again = await run_rollout(
        temporal_client, demo_spec("keeper", lws_values(replicas=3)), fake_worker
    )
    assert again.outcome == Outcome.SUCCEEDED, again.failure
    assert step(again, "lws-controller").detail.startswith("upgraded, revision 2")


async def test_teardown_keeps_what_another_target_uses_and_the_last_user_removes_it(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    specs = [demo_spec("tenant-a"), demo_spec("tenant-b")]
    for spec in specs:
        result = await run_rollout(temporal_client, spec, fake_worker)
        assert result.outcome == Outcome.SUCCEEDED, result.failure
    everything = {"include_dependencies": True, "include_gateway_provider": True}

    first = await (
        await start_teardown(
            temporal_client, TeardownInput(spec=specs[0], **everything), task_queue=fake_worker
        )
    ).result()
    assert step(first, "shared-pieces").status == StepStatus.UNCHANGED
    assert any(
        k.startswith("LWS controller release lws-system/lws kept: still used by "
                     "clustersim/llm-d-wide-ep/tenant-b") for k in first.kept
    ), first.kept
    assert set(fake_cluster.releases) >= {"lws", "istiod"}

    last = await (
        await start_teardown(
            temporal_client, TeardownInput(spec=specs[1], **everything), task_queue=fake_worker
        )
    ).result()
    detail = step(last, "shared-pieces").detail
    assert "lws-system/lws: uninstalled" in detail and "istio-system/istiod: uninstalled" in detail
    assert "namespace lws-system deleted" in detail and "namespace istio-system deleted" in detail
    assert "leaderworkersets.leaderworkerset.x-k8s.io" in detail
    assert "lws" not in fake_cluster.releases and "istiod" not in fake_cluster.releases
    users = await cluster_handle(temporal_client, fake_worker).query(ClusterWorkflow.users)
    assert users == {}


async def test_the_cluster_workflow_continues_as_new_with_its_users(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    started = await temporal_client.start_workflow(
        ClusterWorkflow.run, ClusterInput(cluster=CLUSTER, max_history_events=20),
        id=cluster_workflow_id(CLUSTER, fake_worker), task_queue=fake_worker,
        task_timeout=timedelta(seconds=45),
    )
    for name in ("long-a", "long-b"):
        result = await run_rollout(temporal_client, demo_spec(name), fake_worker)
        assert result.outcome == Outcome.SUCCEEDED, result.failure

    current = cluster_handle(temporal_client, fake_worker)
    described = await current.describe()
    assert described.run_id != started.result_run_id
    users = await current.query(ClusterWorkflow.users)
    assert users["helm/lws-system/lws"] == [
        "clustersim/llm-d-wide-ep/long-a", "clustersim/llm-d-wide-ep/long-b",
    ]
    config = (await current.describe()).raw_description.execution_config
    assert config.default_workflow_task_timeout.ToTimedelta() == timedelta(seconds=45)


async def test_a_burst_of_targets_costs_one_helm_check_per_piece(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    for name in ("burst-a", "burst-b", "burst-c"):
        result = await run_rollout(temporal_client, demo_spec(name), fake_worker)
        assert result.outcome == Outcome.SUCCEEDED, result.failure
        if name != "burst-a":
            detail = step(result, "lws-controller").detail
            assert detail.startswith("already current: made current "), detail
            assert detail.endswith("ago for clustersim/llm-d-wide-ep/burst-a"), detail
    # Made current once; the later asks within FRESH_FOR read the cluster workflow's record.
    assert fake_cluster.names("helm_upgrade_install:lws") == ["helm_upgrade_install:lws"]
    assert len(fake_cluster.names("apply_crds")) == 2


def hold(owner: str, nodes: list[str], expires_in: float = 3600) -> Reservation:
    return Reservation(
        owner=owner, run_id="run", target_id=f"clustersim/ns/{owner}",
        nodes={node: {"nvidia.com/gpu": "8"} for node in nodes}, covers=[],
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )


async def test_holds_are_compared_node_by_node_freed_and_expired(
    temporal_client: Client, fake_worker: str
) -> None:
    cluster = await temporal_client.start_workflow(
        ClusterWorkflow.run, ClusterInput(cluster=CLUSTER),
        id=cluster_workflow_id(CLUSTER, fake_worker), task_queue=fake_worker,
    )

    async def reserve(reservation: Reservation, based_on: int) -> ReserveAnswer:
        return await cluster.execute_update(
            ClusterWorkflow.reserve, ReserveAsk(reservation=reservation, based_on=based_on)
        )

    assert (await reserve(hold("a", ["node-0"]), 0)).accepted
    # Planned from the same view, on another node: nothing it counted has changed.
    assert (await reserve(hold("b", ["node-1"]), 0)).accepted
    stale = await reserve(hold("c", ["node-0", "node-2"]), 0)
    assert not stale.accepted and stale.detail.startswith("a reserved on the same nodes")
    view = await cluster.query(ClusterWorkflow.reservations)
    assert (await reserve(hold("c", ["node-2"], expires_in=1), view.version)).accepted

    freed = await cluster.execute_update(
        ClusterWorkflow.free, FreeAsk(cluster=CLUSTER, owner="a", why="succeeded")
    )
    assert freed.detail == "freed (succeeded)"
    for _ in range(100):  # c's hold expires without its owner
        owners = [r.owner for r in (await cluster.query(ClusterWorkflow.reservations)).reservations]
        if owners == ["b"]:
            break
        await asyncio.sleep(0.1)
    assert owners == ["b"]


async def test_more_asks_at_once_than_the_server_lets_updates_be_in_flight_are_all_answered(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """The server admits at most 10 updates in flight per workflow. Asks are answered at once
    and polled, so 12 targets can all wait on one held LWS install, and all succeed."""
    names = [f"crowd-{i:02d}" for i in range(12)]
    held = fake_cluster.hold("helm_upgrade_install")
    handles = [
        await start_rollout(temporal_client, demo_spec(name), task_queue=fake_worker)
        for name in names
    ]
    cluster = cluster_handle(temporal_client, fake_worker)
    waiting: list[str] = []
    for _ in range(600):
        with contextlib.suppress(RPCError):
            waiting = (await cluster.query(ClusterWorkflow.operations)).get(
                "helm/lws-system/lws", []
            )
        if len(waiting) == len(names):
            break
        await asyncio.sleep(0.05)
    # Every ask is accepted and waits on the one install while it is held.
    assert sorted(waiting) == [f"clustersim/llm-d-wide-ep/{name}" for name in names]
    held.set()
    results = await asyncio.gather(
        *(asyncio.wait_for(rollout_result(handle), WAIT) for handle in handles)
    )

    assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * len(names), [
        r.failure for r in results
    ]
    assert fake_cluster.names("helm_upgrade_install:lws") == ["helm_upgrade_install:lws"]
    users = await cluster.query(ClusterWorkflow.users)
    assert len(users["helm/lws-system/lws"]) == len(names)
    # Started by the first ask with the longer task deadline its tasks need on a busy worker.
    config = (await cluster.describe()).raw_description.execution_config
    assert config.default_workflow_task_timeout.ToTimedelta() == CLUSTER_TASK_TIMEOUT


async def one_ask(
    client: Client, task_queue: str, name: str
) -> tuple[WorkflowHandle[Any, Any], EnsureAsk, AskStatus]:
    """The cluster workflow, started, and the dependencies ask of target `name` sent to it
    (with where it stood when accepted)."""
    cluster = await client.start_workflow(
        ClusterWorkflow.run, ClusterInput(cluster=CLUSTER),
        id=cluster_workflow_id(CLUSTER, task_queue), task_queue=task_queue,
    )
    spec = demo_spec(name)
    ask = EnsureAsk(
        ask_id=f"ensure/dependencies/{name}/run", target_id=spec.target_id,
        target=spec.target, pieces=dependency_pieces(spec), timeout=timedelta(minutes=1),
    )
    return cluster, ask, await cluster.execute_update(ClusterWorkflow.ensure, ask)


async def test_an_ask_sent_again_reads_its_recorded_outcome_and_a_failure_carries_its_type(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    cluster, ask, first = await one_ask(temporal_client, fake_worker, "asked-twice")
    assert first.state == "running"
    status = await until(
        lambda: cluster.query(ClusterWorkflow.ask_status, ask.ask_id),
        lambda status: status.settled,
    )
    assert status.state == "answered" and status.ensured is not None
    assert [o.step for o in status.ensured.outcomes] == [p.step for p in ask.pieces]
    # Sent again under another update ID (as after continue-as-new): read, not done again.
    again = await cluster.execute_update(ClusterWorkflow.ensure, ask, id="another-update-id")
    assert again == status
    assert fake_cluster.names("helm_upgrade_install:lws") == ["helm_upgrade_install:lws"]
    unknown = await cluster.query(ClusterWorkflow.ask_status, "never-sent")
    assert unknown.state == "unknown"


async def test_the_reads_query_answers_each_read_as_its_own_query_would(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """The waiting asks of one worker read together (activities/cluster_reads.py)."""
    cluster, ask, _ = await one_ask(temporal_client, fake_worker, "read-together")
    await until(lambda: cluster.query(ClusterWorkflow.ask_status, ask.ask_id),
                lambda status: status.settled)
    # The same target's next run, moments later: every piece is its own and fresh.
    again = StandingAsk(
        ask=ask.model_copy(update={"ask_id": "ensure/dependencies/read-together/run-2"}),
        now=datetime.now(UTC),
    )
    stranger = StandingAsk(
        ask=ask.model_copy(update={"ask_id": "ensure/x/y", "target_id": "another"}),
        now=datetime.now(UTC),
    )

    reads = await cluster.query(
        ClusterWorkflow.reads,
        ClusterReads(standing=[again, stranger], statuses=[ask.ask_id, "never-sent"]),
    )

    assert reads.statuses == [
        await cluster.query(ClusterWorkflow.ask_status, ask.ask_id),
        await cluster.query(ClusterWorkflow.ask_status, "never-sent"),
    ]
    assert reads.statuses[0].state == "answered" and reads.statuses[1].state == "unknown"
    assert reads.standing == [
        await cluster.query(ClusterWorkflow.standing, again),
        await cluster.query(ClusterWorkflow.standing, stranger),
    ]
    assert reads.standing[0].answer is not None and reads.standing[1].answer is None


async def test_a_failed_dependency_is_reported_at_its_own_step_the_others_done(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    # The dependencies ask carries both CRD bundles and the LWS release, run at once; the
    # release fails, the bundles are applied.
    fake_cluster.faults.append(Fault(
        "helm_upgrade_install", FailureReason.HELM_FAILED,
        "query: failed to query with labels: (503 ServiceUnavailable)",
        when=lambda cluster, arg: arg.release.release_name == "lws",
    ))
    result = await run_rollout(temporal_client, demo_spec("piece-fails"), fake_worker)

    assert result.failure is not None
    assert result.failure.reason == FailureReason.HELM_FAILED
    # Before: the step of the ask's first piece, the Gateway API CRDs, carried helm's message.
    assert result.failure.step == "lws-controller", result.failure
    assert "failedStep" not in result.failure.evidence
    assert "doneSteps" not in result.failure.evidence
    deps = [s for s in result.steps if s.phase == Phase.DEPENDENCIES]
    assert [(s.name, s.status) for s in deps] == [
        ("crds/gateway-api", StepStatus.PASSED),
        ("crds/inference-extension", StepStatus.PASSED),
        ("lws-controller", StepStatus.FAILED),
    ], deps
    assert deps[0].detail == "done (lws-controller failed)"


async def test_two_dependencies_failing_at_once_name_the_first_in_the_asks_order(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    fake_cluster.faults += [
        Fault("apply_crds", FailureReason.MISSING_CRD, "gateway-api CRDs not Established",
              when=lambda cluster, arg: arg.bundle_name == "gateway-api"),
        Fault("helm_upgrade_install", FailureReason.HELM_FAILED, "lws: timed out",
              when=lambda cluster, arg: arg.release.release_name == "lws"),
    ]
    result = await run_rollout(temporal_client, demo_spec("two-fail"), fake_worker)

    assert result.failure is not None and result.failure.step == "crds/gateway-api"
    assert result.failure.phase == Phase.DEPENDENCIES
    deps = [s for s in result.steps if s.phase == Phase.DEPENDENCIES]
    assert [(s.name, s.status, s.detail) for s in deps] == [
        ("crds/gateway-api", StepStatus.FAILED, ""),
        ("crds/inference-extension", StepStatus.PASSED, "done (crds/gateway-api failed)"),
        ("lws-controller", StepStatus.FAILED, "failed too (crds/gateway-api first)"),
    ], deps
    # The gateway provider, asked with them, waits for the CRD bundles: it never ran.
    provider = [s for s in result.steps if s.phase == Phase.GATEWAY_PROVIDER]
    assert [(s.name, s.status, s.detail) for s in provider] == [
        ("gateway-provider/istiod", StepStatus.CANCELLED, "not run: crds/gateway-api failed"),
    ], provider
    assert fake_cluster.names("helm_upgrade_install:istiod") == []


async def test_the_dependency_pieces_are_made_current_at_once(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """The CRD bundles and the LWS release do not depend on one another: the release's helm
    runs while the bundles' applies are still held (in order, it would wait for them)."""
    held = fake_cluster.hold("apply_crds")
    helm = fake_cluster.entered("helm_upgrade_install")
    handle = await start_rollout(temporal_client, demo_spec("at-once"), task_queue=fake_worker)
    await asyncio.wait_for(helm.wait(), WAIT)
    assert fake_cluster.names("helm_upgrade_install") == ["helm_upgrade_install:lws"]
    assert len(fake_cluster.names("apply_crds")) == 2  # both bundles began, neither ended
    # The gateway provider's release, in the same ask, waits for the bundles.
    await asyncio.sleep(0.5)
    assert fake_cluster.names("helm_upgrade_install") == ["helm_upgrade_install:lws"]
    held.set()
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    assert fake_cluster.names("helm_upgrade_install")[:2] == [
        "helm_upgrade_install:lws", "helm_upgrade_install:istiod"
    ]
    # Each piece's step has its own time, as the cluster workflow ran it: the LWS release was
    # current while the bundles were held, the provider began once they were current. (Each
    # step used to span the whole ask.)
    steps = {step.name: step for step in result.steps}
    bundles = [steps["crds/gateway-api"], steps["crds/inference-extension"]]
    lws, istiod = steps["lws-controller"], steps["gateway-provider/istiod"]
    assert all(s.finished_at is not None and istiod.started_at >= s.finished_at for s in bundles)
    assert lws.finished_at is not None and lws.finished_at < min(s.finished_at for s in bundles)
    phases = {phase.phase: phase.duration_seconds for phase in result.phases}
    assert phases[Phase.GATEWAY_PROVIDER] < 0.5 <= phases[Phase.DEPENDENCIES]


async def test_the_gateway_provider_is_installed_beside_the_lws_release(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """Asked with the dependencies, the provider's release starts once the CRD bundles are
    current, while the LWS release's helm still runs (before, it waited for the whole
    dependencies phase); each still shows as a step of its own phase."""
    held = fake_cluster.hold("helm_upgrade_install")
    handle = await start_rollout(temporal_client, demo_spec("beside"), task_queue=fake_worker)
    both = {"helm_upgrade_install:lws", "helm_upgrade_install:istiod"}
    for _ in range(int(WAIT / 0.05)):
        if both <= set(fake_cluster.names("helm_upgrade_install")):
            break
        await asyncio.sleep(0.05)
    assert set(fake_cluster.names("helm_upgrade_install")) == both
    held.set()
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED, result.failure
    phases = {s.name: s.phase for s in result.steps}
    assert phases["lws-controller"] == Phase.DEPENDENCIES
    assert phases["gateway-provider/istiod"] == Phase.GATEWAY_PROVIDER


async def test_a_pause_asked_during_the_shared_pieces_ask_holds_before_the_namespace(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """The dependencies and the gateway provider go in one ask: no step boundary lies between
    them, so a pause takes hold once both are current (three milestones reached), not between
    them with the provider already installed."""
    held = fake_cluster.hold("helm_upgrade_install")
    helm = fake_cluster.entered("helm_upgrade_install")
    spec = demo_spec("pause-after-provider")
    handle = await start_rollout(temporal_client, spec, task_queue=fake_worker)
    await asyncio.wait_for(helm.wait(), WAIT)
    await handle.execute_update(RolloutWorkflow.pause, PauseRequest(by="bob"))
    held.set()
    holding = await until(query(handle), lambda p: p.state == RunState.PAUSED)
    reached = MILESTONES_BEFORE.index("gateway-provider") + 1
    every = milestones(spec, plan_rollout(spec, None, None))
    assert holding.percent == round(100 * reached / len(every))
    assert fake_cluster.names("ensure_namespace") == []
    await handle.execute_update(RolloutWorkflow.resume, ResumeRequest(by="bob"))
    result = await asyncio.wait_for(rollout_result(handle), WAIT)
    assert result.outcome == Outcome.SUCCEEDED, result.failure


def two_provider_releases(document: dict[str, Any]) -> None:
    first = document["gatewayProvider"]["releases"][0]
    document["gatewayProvider"]["releases"] = [{**first, "releaseName": "istio-base"}, first]


async def test_a_failed_provider_release_is_reported_at_its_step_the_ones_before_it_done(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """A gateway provider's releases run in order (a later one may need an earlier one's CRDs):
    those before the failed one were done, none after it ran."""
    fake_cluster.faults.append(Fault(
        "helm_upgrade_install", FailureReason.HELM_FAILED, "istiod: webhook not ready",
        when=lambda cluster, arg: arg.release.release_name == "istiod",
    ))
    result = await run_rollout(
        temporal_client, demo_spec("provider-fails", two_provider_releases), fake_worker
    )

    assert result.failure is not None and result.failure.step == "gateway-provider/istiod"
    assert result.failure.phase == Phase.GATEWAY_PROVIDER
    provider = [s for s in result.steps if s.phase == Phase.GATEWAY_PROVIDER]
    assert [(s.name, s.status, s.detail) for s in provider] == [
        ("gateway-provider/istio-base", StepStatus.PASSED,
         "done before gateway-provider/istiod failed"),
        ("gateway-provider/istiod", StepStatus.FAILED, ""),
    ], provider


async def update_ids(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The IDs of the updates the cluster workflow's current run accepted (the asks sent)."""
    ids = []
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            accepted = event.workflow_execution_update_accepted_event_attributes
            ids.append(accepted.accepted_request.meta.update_id)
    return ids


async def test_a_target_already_using_every_fresh_piece_is_answered_without_an_update(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    first = await run_rollout(temporal_client, demo_spec("warm"), fake_worker)
    assert first.outcome == Outcome.SUCCEEDED, first.failure
    again = await start_rollout(temporal_client, demo_spec("warm"), task_queue=fake_worker)
    result = await rollout_result(again)
    assert result.outcome == Outcome.SUCCEEDED, result.failure

    # Read by the `standing` query: the second run sent no ensure ask of its own.
    sent = await update_ids(cluster_handle(temporal_client, fake_worker))
    asked = [i for i in sent if i.startswith("ensure/") and i.endswith(f"/{again.result_run_id}")]
    assert len(sent) > 2 and not asked, sent
    detail = step(result, "lws-controller").detail
    assert detail.startswith("already current: made current "), detail
    assert fake_cluster.names("helm_upgrade_install:lws") == ["helm_upgrade_install:lws"]


async def test_a_user_that_asks_during_an_operation_reads_its_outcome_without_an_update(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Checks stay fresh for 5 s here, so a third run of each target checks the pieces again.
    monkeypatch.setattr(shared_pieces, "FRESH_FOR", timedelta(seconds=5))
    for name in ("during-a", "during-b"):
        result = await run_rollout(temporal_client, demo_spec(name), fake_worker)
        assert result.outcome == Outcome.SUCCEEDED, result.failure
    await asyncio.sleep(5.5)
    fake_cluster.calls.clear()
    held = fake_cluster.hold("helm_upgrade_install")
    first = await start_rollout(temporal_client, demo_spec("during-a"), task_queue=fake_worker)
    await pending(temporal_client, first.id, "ensure_shared_pieces")
    cluster = cluster_handle(temporal_client, fake_worker)
    for _ in range(300):
        if (await cluster.query(ClusterWorkflow.operations)).get("helm/lws-system/lws"):
            break
        await asyncio.sleep(0.05)
    second = await start_rollout(temporal_client, demo_spec("during-b"), task_queue=fake_worker)
    await pending(temporal_client, second.id, "ensure_shared_pieces")
    held.set()
    results = await asyncio.gather(rollout_result(first), rollout_result(second))
    assert all(r.outcome == Outcome.SUCCEEDED for r in results), [r.failure for r in results]

    # The second target waited for the first one's operation by query, then read it fresh.
    sent = await update_ids(cluster)
    dependencies = f"ensure/dependencies/{second.id}/{second.result_run_id}"
    assert dependencies not in sent, sent
    assert fake_cluster.names("helm_upgrade_install:lws") == ["helm_upgrade_install:lws"]
    detail = step(results[1], "lws-controller").detail
    assert detail.endswith("ago for clustersim/llm-d-wide-ep/during-a"), detail


async def settled_status(cluster: WorkflowHandle[Any, Any], ask_id: str) -> Any:
    for _ in range(200):
        status = await cluster.query(ClusterWorkflow.ask_status, ask_id)
        if status.settled:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{ask_id} never settled")


async def test_each_cluster_of_one_name_has_its_own_users_and_holds(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """`target.cluster` is a name: a dev cluster deleted and created again keeps it, with a new
    kube-system UID. The deleted cluster's target must not refuse the new one's version of a
    piece, nor its holds count against the new one's nodes; and if the first cluster lives on
    (two clusters of one name), its records are there when it asks again."""
    cluster = await temporal_client.start_workflow(
        ClusterWorkflow.run, ClusterInput(cluster=CLUSTER),
        id=cluster_workflow_id(CLUSTER, fake_worker), task_queue=fake_worker,
    )

    async def ensure(name: str, uid: str, *changes: Any) -> Any:
        spec = demo_spec(name, *changes)
        ask = EnsureAsk(
            ask_id=f"ensure/dependencies/{name}/run", target_id=spec.target_id,
            target=spec.target, pieces=dependency_pieces(spec), timeout=timedelta(minutes=1),
            cluster_uid=uid,
        )
        await cluster.execute_update(ClusterWorkflow.ensure, ask)
        return await settled_status(cluster, ask.ask_id)

    assert (await ensure("first-a", "uid-first")).state == "answered"
    held = await cluster.execute_update(
        ClusterWorkflow.reserve,
        ReserveAsk(
            reservation=hold("first-rollout", ["node-0"]), based_on=0, cluster_uid="uid-first"
        ),
    )
    assert held.accepted
    # The second cluster sees no hold of the first, before it asks anything.
    assert (await cluster.query(ClusterWorkflow.reservations, "uid-second")).reservations == []

    # Another LWS version: refused while the first cluster's target was the user; not here.
    second = await ensure("second-b", "uid-second", lws_values(replicas=3))

    assert second.state == "answered", second.error
    users = await cluster.query(ClusterWorkflow.users)
    assert users["helm/lws-system/lws"] == ["clustersim/llm-d-wide-ep/second-b"]
    # The first cluster's holds and users are its own still.
    first_holds = await cluster.query(ClusterWorkflow.reservations, "uid-first")
    assert [r.owner for r in first_holds.reservations] == ["first-rollout"]
    assert (await ensure("first-c", "uid-first")).state == "answered"
    users = await cluster.query(ClusterWorkflow.users)
    assert users["helm/lws-system/lws"] == [
        "clustersim/llm-d-wide-ep/first-a", "clustersim/llm-d-wide-ep/first-c",
    ]


async def test_a_hold_put_aside_is_not_counted_after_its_expiry(
    temporal_client: Client, fake_worker: str
) -> None:
    """A cluster's holds put aside while another cluster of its name is served are expired when
    they are taken back (the planner skips them meanwhile: k8s/reservations.py)."""
    cluster = await temporal_client.start_workflow(
        ClusterWorkflow.run, ClusterInput(cluster=CLUSTER),
        id=cluster_workflow_id(CLUSTER, fake_worker), task_queue=fake_worker,
    )

    async def reserve(owner: str, uid: str, expires_in: float) -> None:
        answer = await cluster.execute_update(
            ClusterWorkflow.reserve,
            ReserveAsk(reservation=hold(owner, ["node-0"], expires_in), based_on=0,
                       cluster_uid=uid),
        )
        assert answer.accepted, answer.detail

    await reserve("first-gone", "uid-first", expires_in=1.5)
    await reserve("second-live", "uid-second", expires_in=3600)  # the first's put aside
    await asyncio.sleep(2)

    await reserve("first-new", "uid-first", expires_in=3600)  # taken back, expired at once
    current = await cluster.query(ClusterWorkflow.reservations, "uid-first")
    assert [r.owner for r in current.reservations] == ["first-new"]


async def test_the_asks_for_shared_pieces_carry_the_cluster_uid_preflight_read(
    temporal_client: Client, fake_cluster: FakeCluster, fake_worker: str
) -> None:
    """Preflight's capacity hold reads the cluster's kube-system UID; the ask for the
    dependencies and the gateway provider carries it, so its activity needs no client and GET
    of its own."""
    fake_cluster.cluster_uid = "uid-read-at-preflight"
    result = await run_rollout(temporal_client, demo_spec("carried-uid"), fake_worker)
    assert result.outcome == Outcome.SUCCEEDED, result.failure

    history = await temporal_client.get_workflow_handle(result.workflow_id).fetch_history()
    asked = [
        json.loads(event.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name
        == "ensure_shared_pieces"
    ]
    assert [ask["cluster_uid"] for ask in asked] == ["uid-read-at-preflight"]
