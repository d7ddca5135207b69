"""Preflight: can this rollout run here at all? Checked before any change to the cluster.

Where it sits: phase 1 of a rollout. It renders every local chart with its values (a value a
chart refuses is InvalidSpec, helmcli/render.py), reads the API server's version, checks for the
CRDs the spec says are already installed, checks the helm binary, and plans capacity: every pod
of every group of the roles being (re)created, plus the surge groups an update creates first,
against what the nodes can still hold (k8s/capacity.py). An impossible plan fails with
InsufficientCapacity and the plan, node by node, as evidence; an unreachable API server is a
retryable error, never a failure reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

import manifests
from activities.failures import failure, target_client
from activities.heartbeat import run_blocking
from activities.helm import helm_errors, runner
from helmcli.render import problems_of, render_charts
from k8s.capacity import (
    RolePlan,
    fits_empty_nodes,
    plan_capacity,
    resolve_surge,
    resolve_unavailable,
    shortened,
    template_changed,
)
from k8s.client import KubeClient, KubeError
from k8s.informers import cached_objects
from k8s.quantity import Resources
from k8s.readiness import is_true
from k8s.reservations import uncovered_pods
from k8s.watching import Collection
from spec.activity_io import (
    CapacityPlan,
    CrdCheck,
    FailureEvidence,
    ObjectRef,
    PreflightInput,
    PreflightReport,
)
from spec.crds import CRD_API_VERSION, CRD_KIND, LWS_CRDS

# Re-exported: `llmd-rollout plan` checks the same bundles.
from spec.crds import GATEWAY_API_CRDS as GATEWAY_API_CRDS
from spec.crds import INFERENCE_EXTENSION_CRDS as INFERENCE_EXTENSION_CRDS
from spec.reasons import FailureReason
from spec.rollout import RoleName, RolloutSpec


def required_crds(spec: RolloutSpec) -> list[str]:
    """The CRDs the spec says are already installed (so no phase of ours installs them)."""
    dependencies = spec.dependencies
    names: list[str] = []
    if dependencies.gateway_api_crds.already_installed:
        names += GATEWAY_API_CRDS
    if dependencies.inference_extension_crds.already_installed:
        names += INFERENCE_EXTENSION_CRDS
    if dependencies.leader_worker_set.already_installed:
        names += LWS_CRDS
    return names


def check_crds(client: KubeClient, names: list[str]) -> list[CrdCheck]:
    checks = []
    for name in names:
        crd = client.get(
            ObjectRef(api_version=CRD_API_VERSION, kind=CRD_KIND, name=name)
        )
        checks.append(
            CrdCheck(name=name, present=crd is not None, established=is_true(crd, "Established"))
        )
    return checks


def role_plans(client: KubeClient, spec: RolloutSpec, roles: list[RoleName]) -> list[RolePlan]:
    """Each role's rendered LWS and the surge its update would need (none on first install or
    when the template does not change)."""
    plans = []
    for role in roles:
        lws = manifests.render_role(spec, role)
        existing = _existing_lws(client, lws)
        strategy = spec.strategy.for_role(role)
        replicas = spec.model_service.role(role).replicas
        surge = 0
        if existing is not None and template_changed(
            lws["spec"]["leaderWorkerTemplate"],
            (existing.get("spec") or {}).get("leaderWorkerTemplate"),
        ):
            surge = resolve_surge(strategy.max_surge, replicas)
        plans.append(
            RolePlan(
                role=role,
                lws=lws,
                surge_groups=surge,
                may_drop_surge=resolve_unavailable(strategy.max_unavailable, replicas) > 0,
            )
        )
    return plans


def _existing_lws(client: KubeClient, lws: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return client.get(ObjectRef.of(lws))
    except KubeError as error:
        if error.status == 404:
            return None
        raise


NODES = Collection("v1", "Node")
PODS = Collection("v1", "Pod")


def cluster_nodes_and_pods(
    client: KubeClient,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every node and every pod of the cluster, from the worker's shared watches."""
    return cached_objects(client, NODES), cached_objects(client, PODS)


def capacity_sync(
    client: KubeClient,
    spec: RolloutSpec,
    roles: list[RoleName],
    held: Mapping[str, Resources] | None = None,
    covers: Set[str] = frozenset(),
) -> CapacityPlan:
    """The capacity plan of `roles` against the nodes and pods; `held`/`covers`: what other
    rollouts hold per node and the LWSes their holds stand for (k8s/reservations.py)."""
    return plan_role_plans(client, spec, role_plans(client, spec, roles), held, covers)


def plan_role_plans(
    client: KubeClient,
    spec: RolloutSpec,
    plans: Sequence[RolePlan],
    held: Mapping[str, Resources] | None = None,
    covers: Set[str] = frozenset(),
    salt: str = "",
) -> CapacityPlan:
    """`capacity_sync` for role plans already made (the capacity hold also records which LWSes
    they cover); `salt` as k8s/capacity.py's `plan_capacity` takes it."""
    nodes, pods = cluster_nodes_and_pods(client)
    return plan_capacity(
        plans, nodes, uncovered_pods(pods, covers), spec.target.namespace, held, salt=salt
    )


def fits_an_empty_cluster_sync(
    client: KubeClient, spec: RolloutSpec, roles: list[RoleName]
) -> bool:
    """Whether the rollout's pods would fit on the nodes with nothing else on them: the capacity
    hold's judgement of whether waiting for capacity can help, and `plan`'s."""
    nodes, _ = cluster_nodes_and_pods(client)
    return fits_empty_nodes(role_plans(client, spec, roles), nodes, spec.target.namespace)


def refuse(plan: CapacityPlan) -> ApplicationError:
    message = (
        f"insufficient capacity: the rollout asks {plan.gpus_asked} GPUs, the nodes it may use "
        f"have {plan.gpus_available} free\n{plan.render()}"
    )
    return failure(
        FailureReason.INSUFFICIENT_CAPACITY,
        message,
        FailureEvidence(
            reason=FailureReason.INSUFFICIENT_CAPACITY.value,
            message=message,
            data={"plan": plan.model_dump(mode="json"), "plan_text": plan.render()},
        ),
    )


async def refuse_unrenderable_charts(spec: RolloutSpec) -> None:
    """Every local chart renders with its values, or the rollout is refused (InvalidSpec) before
    any change: the same check as `validate`, for specs started directly through Temporal."""
    problems = problems_of(await render_charts(spec))
    if problems:
        lines = [str(problem) for problem in problems]
        raise failure(
            FailureReason.INVALID_SPEC,
            f"the chart values do not render: {'; '.join(lines)}",
            problems=lines,
        )


@activity.defn
async def preflight(input: PreflightInput) -> PreflightReport:
    """API reachable (and its version), required CRDs, helm, and the capacity plan."""
    spec = input.spec
    await refuse_unrenderable_charts(spec)
    async with target_client(spec.target) as client:
        version = await run_blocking(client.server_version, "API server version")
        crds = await run_blocking(lambda: check_crds(client, required_crds(spec)), "CRDs")
        missing = [c.name for c in crds if not (c.present and c.established)]
        if missing:
            raise failure(
                FailureReason.MISSING_CRD,
                "the spec says these CRDs are already installed, but they are missing or not "
                f"Established: {', '.join(missing)}",
                missing=missing,
            )
        with helm_errors():
            helm = await runner().version()
        plan = shortened(await run_blocking(
            lambda: capacity_sync(client, spec, list(input.roles)), "capacity plan"
        ))
    # A spec that waits for capacity has its plan held, or refused after the wait, by the
    # capacity hold that follows (activities/capacity_hold.py).
    if not plan.fits and not spec.budgets.capacity_wait:
        raise refuse(plan)
    return PreflightReport(
        server_version=str(version.get("gitVersion", "")),
        helm_version=helm.text,
        crds=crds,
        capacity=plan,
    )
