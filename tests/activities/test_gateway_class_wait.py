"""The Gateway wait and the GatewayClass its Gateway names, on clustersim's API server without
controllers (so no Gateway is ever Accepted): a class that does not exist ends the wait as
InvalidSpec once the grace period is over (and not before), naming the class and the spec field;
a class that exists but is not Accepted is waited for, its conditions in the timeout's evidence;
a worker that may not list GatewayClasses fails as PermissionDenied naming the rule."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import waits
from spec.activity_io import FailureEvidence, WaitForObjectInput
from spec.rollout import RolloutSpec, Target
from tests.activities.conftest import SimCluster
from tests.activities.specs import apply_objects, environment, prepared
from tests.activities.test_permission_denied import service_account

GATEWAY = "infra-wide-ep-inference-gateway"
CLASSES = "/apis/gateway.networking.k8s.io/v1/gatewayclasses"


def gateway(namespace: str, class_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "default", "port": 80, "protocol": "HTTP"}],
        },
    }


async def gateway_of_class(kube_api: SimCluster, class_name: str) -> RolloutSpec:
    """A fresh namespace (every CRD installed) holding a Gateway of `class_name`."""
    spec = await prepared(kube_api.kubeconfig, f"gwclass-{uuid.uuid4().hex[:6]}")
    await apply_objects(spec.target, [gateway(spec.target.namespace, class_name)])
    return spec


async def wait(target: Target, seconds: float) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await environment().run(
            waits.wait_for_gateway,
            WaitForObjectInput(target=target, name=GATEWAY, timeout=timedelta(seconds=seconds)),
        )
    return raised.value


async def test_a_missing_class_fails_the_wait_as_invalid_spec_after_the_grace_period(
    kube_api: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = f"no-such-class-{uuid.uuid4().hex[:6]}"
    spec = await gateway_of_class(kube_api, missing)
    monkeypatch.setattr(waits, "GATEWAY_CLASS_GRACE_SECONDS", 1.0)

    # A budget of ten minutes: only the missing class can end the wait before it.
    error = await wait(spec.target, 600)

    assert error.type == "InvalidSpec" and error.non_retryable
    assert error.message.startswith(
        f"infra.values.gateway.gatewayClassName: GatewayClass '{missing}' does not exist in "
        "the cluster (still missing after 1s)"
    )
    evidence = FailureEvidence.from_details(error.details)
    assert evidence is not None
    assert evidence.data == {
        "gatewayClass": missing, "field": "infra.values.gateway.gatewayClassName",
    }
    assert [o.ref.name for o in evidence.objects] == [GATEWAY]


async def test_a_class_missing_within_the_grace_period_is_waited_for(
    kube_api: SimCluster,
) -> None:
    missing = f"no-such-class-{uuid.uuid4().hex[:6]}"
    spec = await gateway_of_class(kube_api, missing)

    # The default grace (a minute) outlasts this budget: the budget ends the wait.
    error = await wait(spec.target, 3)

    assert error.type == "GatewayNotProgrammed"
    assert f"GatewayClass {missing} not found (yet)" in error.message


async def test_a_class_its_controller_has_not_accepted_is_waited_for_with_its_conditions(
    kube_api: SimCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"unclaimed-{uuid.uuid4().hex[:6]}"
    client = kube_api.client()
    try:
        client.apply({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name},
            "spec": {"controllerName": "example.net/gateway-controller"},
        }, force=True)
        spec = await gateway_of_class(kube_api, name)
        client.request(
            "PATCH", f"{CLASSES}/{name}/status",
            body={"status": {"conditions": [{
                "type": "Accepted", "status": "False", "reason": "InvalidParameters",
                "message": "parametersRef not found", "observedGeneration": 1,
                "lastTransitionTime": "2025-07-26T10:00:00Z",
            }]}},
            content_type="application/merge-patch+json",
        )
        monkeypatch.setattr(waits, "GATEWAY_CLASS_GRACE_SECONDS", 0.0)

        error = await wait(spec.target, 3)
    finally:
        client.request("DELETE", f"{CLASSES}/{name}")
        client.close()

    assert error.type == "GatewayNotProgrammed"
    assert (
        f"GatewayClass {name} (controller example.net/gateway-controller): "
        "Accepted=False (InvalidParameters): parametersRef not found"
    ) in error.message
    evidence = FailureEvidence.from_details(error.details)
    assert evidence is not None
    by_kind = {o.ref.kind: o for o in evidence.objects}
    assert set(by_kind) == {"Gateway", "GatewayClass"}
    assert by_kind["GatewayClass"].status["conditions"][0]["reason"] == "InvalidParameters"


async def test_a_worker_that_may_not_list_gateway_classes_fails_as_permission_denied(
    kube_api: SimCluster, tmp_path: Path
) -> None:
    spec = await gateway_of_class(kube_api, "istio")
    target = service_account(kube_api, tmp_path, [
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gateways"],
         "verbs": ["get", "list", "watch"]},
    ]).model_copy(update={"namespace": spec.target.namespace})

    error = await wait(target, 600)

    assert error.type == "PermissionDenied" and error.non_retryable
    assert (
        'may not list gatewayclasses (API group "gateway.networking.k8s.io") at the cluster scope'
        in error.message
    )
