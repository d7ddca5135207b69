"""End to end with least privilege: the worker authenticated as the worker chart's
ServiceAccount (a TokenRequest token, never the admin one) installs the demo, upgrades it behind
an approval gate, rolls a crash-looping upgrade back and tears everything down with exactly the
chart's rules (charts/llmd-rollout-worker/values.yaml, rendered by the pinned helm, enforced by
clustersim's RBAC); and, rule by rule, a chart without that rule fails the first scenario that
needs it with PermissionDenied naming the verb and the resource.

Each case gets a cluster of its own: a rule's removal must fail from a clean cluster, not from
what an earlier case left behind. The scenarios and the whole table are `-m rbac_table`
(`make test-rbac`, which CI runs); `make test` checks only that every rule has its row.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pytest.mark import ParameterSet
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from rollouts.observing import rollout_result
from rollouts.starting import start_rollout, start_teardown
from spec.reasons import FailureReason
from spec.rollout import RolloutSpec
from spec.workflow_io import ApproveRequest, Outcome, RolloutResult, RunState, TeardownInput
from tests.simcluster import running_sim_cluster
from tests.workflows.e2e import TIME_SCALE, sim_spec, small_decode_pods
from tests.workflows.scenarios import query, until
from tests.workflows.specs import Change, decode_steps, image
from tests.workflows.worker_rbac import (
    SERVICE_ACCOUNT,
    RuleCut,
    WorkerIdentity,
    rule_cuts,
    worker_identity,
)
from workflows.rollout import RolloutWorkflow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLLOUT_TIMEOUT = 240.0
NAMESPACE = "llm-d-wide-ep"
VLLM = "ghcr.io/llm-d/llm-d-dev"
CANARY = decode_steps({"partition": 1, "approval": True})
SCENARIOS = ("install", "upgrade", "rollback", "teardown")


@dataclass(frozen=True)
class Denied:
    """The first scenario that failed, and how."""

    scenario: str
    reason: str
    message: str


def as_worker(identity: WorkerIdentity, *changes: Change) -> RolloutSpec:
    """The demo spec aimed at the cluster through the ServiceAccount's kubeconfig."""

    def through_service_account(document: dict[str, object]) -> None:
        target = document["target"]
        assert isinstance(target, dict)
        target["kubeconfig"] = str(identity.kubeconfig)

    return sim_spec("least-privilege", identity.sim, small_decode_pods, *changes,
                    through_service_account)


def _denied(scenario: str, result: RolloutResult) -> Denied | None:
    if result.failure is None or result.failure.reason != FailureReason.PERMISSION_DENIED:
        return None
    return Denied(scenario, result.failure.reason, result.failure.message)


async def run_scenarios(client: Client, task_queue: str, identity: WorkerIdentity) -> Denied | None:
    """Install, gated upgrade (approved), crash-loop rollback, full teardown, in order, as the
    ServiceAccount; the first PermissionDenied ends it. Any other failure fails the test."""
    installed = await asyncio.wait_for(rollout_result(await start_rollout(
        client, as_worker(identity, image(f"{VLLM}:v0.2.0")), task_queue=task_queue
    )), ROLLOUT_TIMEOUT)
    if denied := _denied("install", installed):
        return denied
    assert installed.outcome == Outcome.SUCCEEDED, installed.failure

    handle = await start_rollout(
        client, as_worker(identity, CANARY, image(f"{VLLM}:v0.2.1")), task_queue=task_queue
    )
    waiting = await until(
        query(handle),
        lambda p: p.state in (RunState.WAITING_FOR_APPROVAL, RunState.FINISHED),
        ROLLOUT_TIMEOUT,
    )
    if waiting.state == RunState.WAITING_FOR_APPROVAL:
        await handle.execute_update(RolloutWorkflow.approve, ApproveRequest(by="e2e-rbac"))
    upgraded = await asyncio.wait_for(rollout_result(handle), ROLLOUT_TIMEOUT)
    if denied := _denied("upgrade", upgraded):
        return denied
    assert upgraded.outcome == Outcome.SUCCEEDED, upgraded.failure

    crashing = f"{VLLM}:v9.crash"
    identity.sim.fault("crash", "--image", crashing, "--count", "1000", "--after", "5")
    try:
        rolled_back = await asyncio.wait_for(rollout_result(await start_rollout(
            client, as_worker(identity, image(crashing)), task_queue=task_queue
        )), ROLLOUT_TIMEOUT)
    finally:
        identity.sim.fault("clear")
    if denied := _denied("rollback", rolled_back):
        return denied
    assert rolled_back.outcome == Outcome.ROLLED_BACK, rolled_back.failure
    assert rolled_back.failure is not None
    assert rolled_back.failure.reason == FailureReason.CRASH_LOOP, rolled_back.failure
    assert rolled_back.rollback is not None and rolled_back.rollback.verified, rolled_back.rollback

    everything = TeardownInput(
        spec=as_worker(identity, image(f"{VLLM}:v0.2.1")),
        include_gateway_provider=True, include_dependencies=True,
    )
    teardown = await start_teardown(client, everything, task_queue=task_queue)
    try:
        removed = await asyncio.wait_for(teardown.result(), ROLLOUT_TIMEOUT)
    except WorkflowFailureError as error:
        cause = error.cause.cause if error.cause is not None else None
        assert isinstance(cause, ApplicationError), error.cause
        assert cause.type == FailureReason.PERMISSION_DENIED, cause
        return Denied("teardown", cause.type, cause.message)
    assert removed.outcome == Outcome.REMOVED, removed.steps
    return None


async def scenarios_as_worker(
    client: Client, task_queue: str, workdir: Path, cuts: tuple[RuleCut, ...]
) -> Denied | None:
    """The scenarios on a fresh cluster with the chart's rules, minus `cuts`."""
    async with running_sim_cluster(workdir, time_scale=TIME_SCALE) as sim:
        identity = worker_identity(sim, workdir, [NAMESPACE], cuts)
        return await run_scenarios(client, task_queue, identity)


@pytest.mark.rbac_table
async def test_install_gated_upgrade_rollback_and_teardown_with_only_the_charts_rules(
    client: Client, real_worker: str, tmp_path: Path
) -> None:
    assert await scenarios_as_worker(client, real_worker, tmp_path, ()) is None


# Which scenario first needs each rule: the proof that the rule is needed (from `make test-rbac`).
PROVED_BY: dict[str, str] = {
    "target:pods/log": "rollback",
    "target:pods/proxy": "install",
    "target:services/proxy": "install",
    "target:events": "rollback",
    "target:configmaps": "install",
    "target:secrets": "install",
    "target:services,serviceaccounts": "install",
    "target:deployments": "install",
    "target:statefulsets": "install",
    "target:leaderworkersets": "install",
    "target:inferencepools,inferencemodels": "install",
    "target:gateways,httproutes": "install",
    "target:roles,rolebindings": "install",
    "shared:secrets": "install",
    "shared:configmaps": "install",
    "cluster:namespaces": "install",
    "cluster:nodes": "install",
    "cluster:pods": "install",
    "cluster:customresourcedefinitions": "install",
    "cluster:gatewayclasses": "install",
    "target:configmaps:watch": "teardown",
    "target:services,serviceaccounts:watch": "teardown",
    "target:roles,rolebindings:watch": "teardown",
    "cluster:pods:watch": "install",
    "cluster:namespaces:watch": "teardown",
}
_ONWARD = (
    "granted onward to the EPP by its Role: Kubernetes lets the worker grant only what it holds,"
    " and clustersim does not check escalation, so no scenario here fails without it"
)
# Rules no scenario here needs, and why: one row checks the scenarios pass without them all.
UNPROVABLE_HERE: dict[str, str] = {
    "target:pods": (
        _ONWARD + "; the worker's own pod reads are covered by the cluster-wide pods rule"
    ),
    "target:endpointslices": _ONWARD,
    "target:tokenreviews": _ONWARD,
    "target:subjectaccessreviews": _ONWARD,
    "target:ingresses": "the infra chart renders an Ingress only when its values enable one",
    "target:destinationrules": (
        "the infra chart renders a DestinationRule only where Istio's API is served; the demo's"
        " gateway provider on clustersim serves none"
    ),
}


# Verbs a whole-rule cut cannot single out (the rule's other verbs are refused first): the
# watches with which teardown (wait_gone) sees objects go, and the shared pod watch preflight
# plans capacity from. helm's own waits are the polling `legacy` strategy
# (helmcli/commands.wait_args), so no helm-only object needs `watch`.
WATCH_ROWS = {
    "target:configmaps", "target:services,serviceaccounts", "target:roles,rolebindings",
    "cluster:namespaces", "cluster:pods",
}


# The row that leaves out every rule of UNPROVABLE_HERE at once: no scenario fails without all
# of them, so none fails without any one (RBAC only adds up), in one run instead of one each.
TOGETHER = "unprovable-here-together"


def all_cuts() -> list[RuleCut]:
    cuts = rule_cuts()
    return cuts + [cut.only("watch") for cut in cuts if cut.id in WATCH_ROWS]


def table() -> list[ParameterSet]:
    cuts = all_cuts()
    rows = [pytest.param((cut,), id=cut.id) for cut in cuts if cut.id not in UNPROVABLE_HERE]
    together = tuple(cut for cut in cuts if cut.id in UNPROVABLE_HERE)
    return [*rows, pytest.param(together, id=TOGETHER)]


def test_every_rule_of_the_chart_is_proved_or_says_why_not() -> None:
    ids = {cut.id for cut in all_cuts()}
    assert ids == PROVED_BY.keys() | UNPROVABLE_HERE.keys()
    assert not PROVED_BY.keys() & UNPROVABLE_HERE.keys()
    assert set(PROVED_BY.values()) <= set(SCENARIOS)


@pytest.mark.rbac_table
@pytest.mark.parametrize("cuts", table())
async def test_a_chart_without_the_rule_fails_with_permission_denied_naming_it(
    client: Client, real_worker: str, tmp_path: Path, cuts: tuple[RuleCut, ...]
) -> None:
    denied = await scenarios_as_worker(client, real_worker, tmp_path, cuts)
    ids = [cut.id for cut in cuts]
    print(f"RBAC-TABLE {','.join(ids)} -> {denied.scenario if denied else None}:"
          f" {denied.message if denied else ''}")
    if all(cut_id in UNPROVABLE_HERE for cut_id in ids):
        assert denied is None, ([UNPROVABLE_HERE[cut_id] for cut_id in ids], denied)
        return
    (cut,) = cuts
    assert denied is not None, f"no scenario needs {cut.id}: the rule is unnecessary"
    assert denied.scenario == PROVED_BY[cut.id], denied
    assert denied.reason == FailureReason.PERMISSION_DENIED
    assert SERVICE_ACCOUNT in denied.message
    named = [
        f"may not {verb} {resource} (API group \"{group}\")"
        for verb in cut.refused_verbs for resource in cut.resources for group in cut.api_groups
    ]
    assert any(rule in denied.message for rule in named), (named, denied.message)
