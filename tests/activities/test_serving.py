"""The demo stack end to end through the activities on clustersim: Helm releases for the gateway
provider and the infra chart, the Gateway Programmed, the model service applied, the HTTPRoute
accepted, the EPP available, vLLM serving on every pod, and verification through the gateway
showing that prefill and decode both served the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError

from activities import helm, kube, serving, verification, waits
from helmcli import HELM_ENV
from manifests.labels import epp_name
from spec.activity_io import (
    ApplyModelServiceInput,
    DeleteObjectsInput,
    FailureEvidence,
    HelmReleaseInput,
    HelmUninstallInput,
    HfTokenSecretInput,
    ModelLoadInput,
    VerifyInput,
    WaitForObjectInput,
)
from spec.rollout import RolloutSpec
from tests.activities.conftest import REPO, SimCluster
from tests.activities.specs import environment, prepared
from vllmsignals.metrics import GENERATION_TOKENS

TIMEOUT = timedelta(seconds=60)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(cluster: SimCluster) -> AsyncIterator[RolloutSpec]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", "hf_serving_test_token")
        patch.setenv(HELM_ENV, str(REPO / ".venv" / "bin" / "helm"))
        spec = await prepared(cluster.kubeconfig, "llm-d-wide-ep", startup_probe=False)
        spec = spec.model_copy(
            update={"budgets": spec.budgets.model_copy(update={"model_load": TIMEOUT})}
        )
        env = environment()
        releases = [*spec.gateway_provider.releases, spec.infra]
        for release in releases:
            await env.run(
                helm.helm_upgrade_install,
                HelmReleaseInput(target=spec.target, release=release, timeout=TIMEOUT),
            )
        await env.run(
            kube.ensure_hf_token_secret,
            HfTokenSecretInput(target=spec.target, hf_token=spec.model_service.hf_token),
        )
        await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))
        yield spec
        await env.run(
            kube.delete_objects,
            DeleteObjectsInput(target=spec.target, rollout=spec.metadata.name, timeout=TIMEOUT),
        )
        for release in reversed(releases):
            await env.run(
                helm.helm_uninstall,
                HelmUninstallInput(
                    target=spec.target,
                    release_name=release.release_name,
                    namespace=release.namespace or spec.target.namespace,
                    timeout=TIMEOUT,
                ),
            )


@pytest.mark.asyncio(loop_scope="session")
async def test_gateway_route_and_epp_become_ready(stack: RolloutSpec) -> None:
    env = environment()
    gateway = await env.run(
        waits.wait_for_gateway,
        WaitForObjectInput(target=stack.target, name=stack.infra.gateway, timeout=TIMEOUT),
    )
    assert "Programmed=True" in gateway.detail
    route = await env.run(
        waits.wait_for_route,
        WaitForObjectInput(
            target=stack.target, name=stack.model_service.full_name, timeout=TIMEOUT
        ),
    )
    assert "ResolvedRefs=True" in route.detail
    epp = await env.run(
        waits.wait_for_deployment,
        WaitForObjectInput(target=stack.target, name=epp_name(stack), timeout=TIMEOUT),
    )
    assert "1/1 available" in epp.detail


@pytest.mark.asyncio(loop_scope="session")
async def test_verification_shows_prefill_and_decode_both_served(stack: RolloutSpec) -> None:
    env = environment()
    for role in stack.strategy.role_order:
        await env.run(serving.wait_for_model_load, ModelLoadInput(spec=stack, role=role))
    result = await env.run(verification.verify_gateway, VerifyInput(spec=stack))
    assert result.passed, result.checks
    assert stack.model_service.model_name in result.models
    assert result.completion_tokens >= 1
    traffic = {t.role: t for t in result.traffic}
    assert traffic["prefill"].prompt_tokens > 0
    assert traffic["decode"].generation_tokens > 0


@pytest.mark.asyncio(loop_scope="session")
async def test_a_gateway_answering_503_fails_verification_with_the_response(
    stack: RolloutSpec, cluster: SimCluster
) -> None:
    env = environment()
    for role in stack.strategy.role_order:
        await env.run(serving.wait_for_model_load, ModelLoadInput(spec=stack, role=role))
    cluster.fault("gateway-503", "--duration", "100000")
    try:
        with pytest.raises(ApplicationError) as raised:
            await env.run(verification.verify_gateway, VerifyInput(spec=stack))
    finally:
        cluster.fault("clear")
    assert raised.value.type == "VerificationFailed"
    assert "models: GET /v1/models: HTTP 503" in str(raised.value)
    evidence = FailureEvidence.from_details(raised.value.details)
    assert evidence is not None
    checks = {c["name"]: c for c in evidence.data["result"]["checks"]}
    assert "no healthy upstream" in checks["models"]["response"]


@pytest.mark.asyncio(loop_scope="session")
async def test_one_metrics_read_failing_is_retried_and_verification_passes(
    stack: RolloutSpec, cluster: SimCluster
) -> None:
    """Issue 14: one 500 on one pod's /metrics proxy read made the pod silently drop out of the
    totals, and the rollout ended `VerificationFailed ... decode did not serve the request`."""
    env = environment()
    for role in stack.strategy.role_order:
        await env.run(serving.wait_for_model_load, ModelLoadInput(spec=stack, role=role))
    await env.run(verification.verify_gateway, VerifyInput(spec=stack))  # decode has served
    client = cluster.client()
    try:
        clean = verification._role_metrics(client, stack)
        cluster.api_fault(
            "--error", "500", "--path", "pods/.*decode.*/proxy/metrics", "--count", "1"
        )
        faulted = verification._role_metrics(client, stack)
    finally:
        cluster.api_fault("clear")
        client.close()
    # The pod whose first read failed is counted, not skipped.
    assert clean["decode"][1][GENERATION_TOKENS] > 0
    assert faulted["decode"][1][GENERATION_TOKENS] >= clean["decode"][1][GENERATION_TOKENS]
    cluster.api_fault("--error", "500", "--path", "pods/.*/proxy/metrics", "--count", "1")
    try:
        result = await env.run(verification.verify_gateway, VerifyInput(spec=stack))
    finally:
        cluster.api_fault("clear")
    assert result.passed, result.checks


# ~35 s (the verification's retries wait out their back-off): with the long scenarios.
@pytest.mark.long
@pytest.mark.asyncio(loop_scope="session")
async def test_metrics_that_cannot_be_read_retry_the_verification_instead_of_failing_it(
    stack: RolloutSpec, cluster: SimCluster
) -> None:
    env = environment()
    for role in stack.strategy.role_order:
        await env.run(serving.wait_for_model_load, ModelLoadInput(spec=stack, role=role))
    cluster.api_fault("--error", "500", "--path", "pods/.*decode.*/proxy/metrics")
    try:
        with pytest.raises(ApplicationError) as raised:
            await env.run(verification.verify_gateway, VerifyInput(spec=stack))
    finally:
        cluster.api_fault("clear")
    assert raised.value.type == verification.VERIFICATION_INCOMPLETE
    assert not raised.value.non_retryable
    # Still so at the end of the budget: the API server's failure, not "did not serve".
    assert raised.value.details[0]["reason"] == "ClusterUnreachable"
    assert "cannot read /metrics of pod" in str(raised.value)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_api_servers_own_5xx_on_the_gateway_proxy_is_retried_not_a_verdict(
    stack: RolloutSpec, cluster: SimCluster
) -> None:
    """A 500 Status the API server answers for the service proxy says nothing of the gateway:
    retried (the gateway's own 503, above, still fails verification)."""
    env = environment()
    for role in stack.strategy.role_order:
        await env.run(serving.wait_for_model_load, ModelLoadInput(spec=stack, role=role))
    cluster.api_fault("--error", "500", "--path", "services/.*/proxy", "--count", "3")
    try:
        result = await env.run(verification.verify_gateway, VerifyInput(spec=stack))
    finally:
        cluster.api_fault("clear")
    assert result.passed, result.checks
