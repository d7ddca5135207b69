"""Entry points: the model-service objects of a rollout spec, in apply order.

The model-service phase applies `render_shared` first (identities, the EPP, routing), then each
role's LeaderWorkerSet with `render_role` in the order the strategy says; `render_model_service`
is the whole set, for snapshots and diffs. Rendering is pure: the same spec gives the same
objects, and a change to one role's serving spec changes only that role's LWS (plus the
spec-revision annotation on every object's metadata).
"""

from __future__ import annotations

from typing import Any

from manifests.epp import (
    epp_config_map,
    epp_deployment,
    epp_role,
    epp_role_binding,
    epp_service,
    epp_service_account,
)
from manifests.lws import leader_worker_set, model_service_account
from manifests.routing import http_route, inference_model, inference_pool
from spec.rollout import RoleName, RolloutSpec

# The full set lists prefill before decode; a rollout applies roles in `strategy.roleOrder`.
APPLY_ORDER_ROLES: tuple[RoleName, ...] = ("prefill", "decode")


def render_shared(spec: RolloutSpec) -> list[dict[str, Any]]:
    """Everything but the two LeaderWorkerSets, in apply order."""
    return [
        model_service_account(spec),
        epp_service_account(spec),
        epp_config_map(spec),
        epp_deployment(spec),
        epp_service(spec),
        epp_role(spec),
        epp_role_binding(spec),
        inference_pool(spec),
        inference_model(spec),
        http_route(spec),
    ]


def render_role(
    spec: RolloutSpec, role: RoleName, *, partition: int | None = None
) -> dict[str, Any]:
    """The LeaderWorkerSet of one role; `partition` holds groups below it at their old revision."""
    return leader_worker_set(spec, role, partition)


def render_model_service(spec: RolloutSpec) -> list[dict[str, Any]]:
    """Every model-service object, in apply order: shared objects, then prefill and decode."""
    return render_shared(spec) + [render_role(spec, role) for role in APPLY_ORDER_ROLES]
