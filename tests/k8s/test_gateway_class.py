"""What the GatewayClass a waiting Gateway names means for its wait: a class missing past the
grace period is a spec to fix (named with its field), a class there but not Accepted is waited
for with its state in the detail, and an Accepted Gateway's class is not looked at."""

from __future__ import annotations

from typing import Any

from k8s.gateway_class import gateway_class_state, referenced_class

FIELD = "infra.values.gateway.gatewayClassName"


def gateway(class_name: str | None = "istoi", accepted: str | None = None) -> dict[str, Any]:
    conditions = (
        [] if accepted is None else [{"type": "Accepted", "status": accepted, "reason": "x"}]
    )
    return {
        "metadata": {"name": "infra-inference-gateway", "namespace": "llm"},
        "spec": {"gatewayClassName": class_name} if class_name else {},
        "status": {"conditions": conditions},
    }


def gateway_class(accepted: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "istio"},
        "spec": {"controllerName": "example.net/gateway-controller"},
        "status": {"conditions": [accepted] if accepted else []},
    }


def test_the_class_is_looked_at_only_while_the_gateway_is_not_accepted() -> None:
    assert referenced_class(gateway("istoi")) == "istoi"
    assert referenced_class(gateway("istoi", accepted="Unknown")) == "istoi"
    assert referenced_class(gateway("istoi", accepted="False")) == "istoi"
    assert referenced_class(gateway("istoi", accepted="True")) is None
    assert referenced_class(gateway(None)) is None
    assert referenced_class(None) is None


def test_a_missing_class_is_waited_for_within_the_grace_period() -> None:
    state = gateway_class_state("istoi", None, 59.9, 60.0, ["istio"], FIELD)

    assert state.failure is None
    assert state.detail == "GatewayClass istoi not found (yet)"


def test_a_class_missing_past_the_grace_period_fails_naming_the_class_and_the_field() -> None:
    state = gateway_class_state("istoi", None, 60.0, 60.0, ["kgateway", "istio"], FIELD)

    assert state.failure == (
        "infra.values.gateway.gatewayClassName: GatewayClass 'istoi' does not exist in the "
        "cluster (still missing after 60s), so no controller will program the Gateway; "
        "GatewayClasses there: istio, kgateway"
    )


def test_a_missing_class_in_a_cluster_without_classes_says_none() -> None:
    state = gateway_class_state("istio", None, 61.0, 60.0, [], FIELD)

    assert state.failure is not None and state.failure.endswith("GatewayClasses there: none")


def test_a_class_not_accepted_by_its_controller_is_waited_for_with_its_state() -> None:
    unclaimed = gateway_class_state("istio", gateway_class(), 0.0, 60.0, ["istio"], FIELD)
    refused = gateway_class_state(
        "istio",
        gateway_class(
            {"type": "Accepted", "status": "False", "reason": "InvalidParameters",
             "message": "parametersRef not found"}
        ),
        # Found now: how long it was missing before does not matter.
        600.0,
        60.0,
        ["istio"],
        FIELD,
    )

    assert unclaimed.failure is None and refused.failure is None
    assert unclaimed.detail == (
        "GatewayClass istio (controller example.net/gateway-controller): Accepted=unknown"
    )
    assert refused.detail == (
        "GatewayClass istio (controller example.net/gateway-controller): "
        "Accepted=False (InvalidParameters): parametersRef not found"
    )
