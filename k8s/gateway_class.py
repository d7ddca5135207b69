"""Can the GatewayClass a waiting Gateway names still make it Programmed?

Where it sits: pure logic under the Gateway wait (activities/waits.py `wait_for_gateway`). While
the Gateway is neither Accepted nor Programmed, the wait reads the GatewayClass its
`spec.gatewayClassName` names and asks here what that class means:

- the class does not exist, and has not for longer than a grace period: no controller will ever
  take up the Gateway, so waiting out the budget only hides the cause. The fix is in the spec (the
  infra values name a class nobody registers), so the wait fails at once naming the class and the
  spec field. The grace exists because a gateway provider registers its class a few seconds after
  it starts (istiod, kgateway), so "missing" right after the provider's install can still heal.
- the class exists but its controller has not Accepted it (no controller for its
  `controllerName`, or the controller refused its parameters): it may still be taken up, so the
  wait goes on; its state goes into the wait's detail and, at the budget's end, its evidence.

The caller measures how long the class has been missing (this module reads no clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from k8s.readiness import condition, describe_condition, is_true


@dataclass(frozen=True)
class GatewayClassState:
    """What the named class means for the Gateway's wait: a detail for heartbeats and messages,
    and a failure when the class's absence has outlasted the grace period."""

    name: str
    detail: str
    failure: str | None = None


def referenced_class(gateway: Mapping[str, Any] | None) -> str | None:
    """The GatewayClass a Gateway that is still waiting for its controller names, or None when
    there is nothing to look at: no Gateway yet, no class named, or the Gateway already
    Accepted (its class exists and its controller took it up)."""
    if gateway is None or is_true(gateway, "Accepted"):
        return None
    name = (gateway.get("spec") or {}).get("gatewayClassName")
    return str(name) if name else None


def gateway_class_state(
    name: str,
    gateway_class: Mapping[str, Any] | None,
    missing_seconds: float,
    grace_seconds: float,
    existing: Iterable[str],
    spec_field: str,
) -> GatewayClassState:
    """The class `name` (None: not in the cluster for `missing_seconds`) as the Gateway's wait
    sees it. `existing` names the classes the cluster has, for the message; `spec_field` is the
    spec's path to the class name, so the message says what to change."""
    if gateway_class is None:
        detail = f"GatewayClass {name} not found"
        if missing_seconds < grace_seconds:
            return GatewayClassState(name, f"{detail} (yet)")
        others = ", ".join(sorted(existing)) or "none"
        return GatewayClassState(
            name,
            detail,
            f"{spec_field}: GatewayClass {name!r} does not exist in the cluster (still missing "
            f"after {grace_seconds:.0f}s), so no controller will program the Gateway; "
            f"GatewayClasses there: {others}",
        )
    accepted = condition(gateway_class, "Accepted")
    controller = (gateway_class.get("spec") or {}).get("controllerName") or "unknown"
    detail = (
        f"GatewayClass {name} (controller {controller}): "
        f"Accepted={describe_condition(accepted)}"
    )
    if accepted is not None and accepted.get("status") == "False" and accepted.get("message"):
        detail += f": {accepted['message']}"
    return GatewayClassState(name, detail)
