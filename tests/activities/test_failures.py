"""The one translation of what the plumbing raises into the errors workflows see: a failure
reason (non-retryable, with evidence) or "retry" (retryable, never a reason)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from temporalio.exceptions import ApplicationError

from activities import verification
from activities.failures import API_UNAVAILABLE, api_failure, target_client
from activities.helm import HELM_TRANSIENT, helm_failure
from helmcli import HelmCommandFailed, HelmRun, HelmTimedOut, HelmUnusable
from k8s import ApiUnavailable, KubeError, ObjectRefused, PodFailure, UnknownKind
from k8s.client import KubeClient
from spec.activity_io import FailureEvidence, ObjectRef
from spec.reasons import FailureReason
from spec.rollout import Target

# A client is built from this without a request: nothing needs to listen there.
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""

REF = ObjectRef(api_version="v1", kind="ConfigMap", name="c", namespace="n")
CONFLICT = {
    "reason": "Conflict",
    "details": {"causes": [{"message": 'conflict with "helm" using v1: .data.x'}]},
}


def reason(error: ApplicationError) -> tuple[str | None, bool]:
    return error.type, error.non_retryable


def test_an_api_that_kept_failing_is_retried_not_a_reason() -> None:
    error = api_failure(ApiUnavailable(0, "GET /api/v1: the API server kept failing"))
    assert reason(error) == (API_UNAVAILABLE, False)
    assert error.type not in {r.value for r in FailureReason}
    assert "unreachable" in error.message and "kept failing" in error.message


def test_an_unknown_kind_is_a_missing_crd() -> None:
    error = api_failure(UnknownKind(404, "the API server serves no x.example/v1"))
    assert reason(error) == ("MissingCRD", True)


def test_any_other_refusal_is_cluster_unreachable_and_final() -> None:
    error = api_failure(KubeError(401, "GET /api/v1/pods: HTTP 401: Unauthorized"))
    assert reason(error) == ("ClusterUnreachable", True)
    assert "Unauthorized" in error.message


FORBIDDEN = {
    "kind": "Status",
    "reason": "Forbidden",
    "message": 'pods is forbidden: User "system:serviceaccount:ci:deployer" cannot list '
    'resource "pods" in API group "" in the namespace "llm-d"',
}


def test_forbidden_is_permission_denied_naming_verb_resource_and_namespace() -> None:
    listing = KubeError(403, "GET /api/v1/namespaces/llm-d/pods: HTTP 403: forbidden", FORBIDDEN)
    for error in (api_failure(listing), api_failure(ObjectRefused(listing, REF, "apply", False))):
        assert reason(error) == ("PermissionDenied", True)
        assert 'may not list pods (API group "") in namespace "llm-d"' in error.message
        data = FailureEvidence.from_details(error.details).data
        assert (data["verb"], data["resource"], data["namespace"]) == ("list", "pods", "llm-d")


def test_a_5xx_status_that_left_the_retries_is_still_retryable() -> None:
    body = {"kind": "Status", "reason": "InternalError", "message": "Internal error occurred"}
    assert reason(api_failure(KubeError(500, "HTTP 500", body))) == (API_UNAVAILABLE, False)


def test_refused_writes_name_the_object_and_why() -> None:
    conflict = ObjectRefused(KubeError(409, "Apply failed", CONFLICT), REF, "apply", False)
    error = api_failure(conflict)
    assert reason(error) == ("ApplyConflict", True) and "(helm)" in error.message
    forced = api_failure(ObjectRefused(KubeError(409, "x", CONFLICT), REF, "apply", True))
    assert reason(forced) == ("ApplyRejected", True)
    missing = api_failure(ObjectRefused(UnknownKind(404, "no kind"), REF, "apply", False))
    assert reason(missing) == ("MissingCRD", True) and "install its CRD" in missing.message
    deleting = api_failure(ObjectRefused(KubeError(422, "no"), REF, "delete", False))
    assert reason(deleting) == ("ApplyRejected", True)
    assert deleting.message == f"cannot delete {REF}: no"


async def test_target_client_translates_what_leaves_its_block(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    target = Target(cluster="c", namespace="failures", kubeconfig=str(tmp_path / "kubeconfig"))
    with pytest.raises(ApplicationError) as raised:
        async with target_client(target):
            raise ApiUnavailable(0, "GET /version: the API server kept failing")
    assert reason(raised.value) == (API_UNAVAILABLE, False)
    evidence = FailureEvidence(reason="CrashLoop", message="pod p crashed")
    with pytest.raises(ApplicationError) as crashed:
        async with target_client(target):
            raise PodFailure(FailureReason.CRASH_LOOP, "pod p crashed", evidence)
    assert reason(crashed.value) == ("CrashLoop", True)
    assert FailureEvidence.from_details(crashed.value.details) == evidence


def test_helm_errors_are_preflight_retry_or_helm_failed() -> None:
    assert reason(helm_failure(HelmUnusable("helm not found"))) == ("PreflightFailed", True)
    assert reason(helm_failure(HelmTimedOut("helm did not finish"))) == (HELM_TRANSIENT, False)
    lost = HelmRun(1, "", "Error: Kubernetes cluster unreachable: connection refused")
    assert reason(helm_failure(HelmCommandFailed("helm history x", ["history"], lost))) == (
        HELM_TRANSIENT,
        False,
    )
    # A Kubernetes Status body from a busy API server (issue 14: this was HelmFailed).
    internal = HelmRun(
        1,
        "",
        "Error: INSTALLATION FAILED: failed to create resource: clustersim injected "
        "fault 5f2a (500 InternalError)",
    )
    assert reason(helm_failure(HelmCommandFailed("helm upgrade x", ["upgrade"], internal))) == (
        HELM_TRANSIENT,
        False,
    )
    forbidden = HelmRun(
        1,
        "",
        'Error: secrets is forbidden: User "u" cannot create resource "secrets" in API '
        'group "" in the namespace "llm-d"',
    )
    denied = helm_failure(HelmCommandFailed("helm upgrade x", ["upgrade"], forbidden))
    assert reason(denied) == ("PermissionDenied", True)
    assert 'u may not create secrets (API group "") in namespace "llm-d"' in denied.message
    killed = HelmRun(-9, "", "")
    assert reason(helm_failure(HelmCommandFailed("helm upgrade x", ["upgrade"], killed))) == (
        HELM_TRANSIENT,
        False,
    )
    broken = HelmRun(1, "", "Error: chart not found")
    failed = helm_failure(HelmCommandFailed("helm upgrade x", ["upgrade", "x"], broken))
    assert reason(failed) == ("HelmFailed", True)
    assert failed.message == "helm upgrade x failed: Error: chart not found"


DENIED = (
    'configmaps "snap" is forbidden: User "system:serviceaccount:ops:worker" cannot patch'
    ' resource "configmaps" in API group "" in the namespace "llm"'
)


def _denied_evidence(error: ApplicationError) -> dict[str, object]:
    assert reason(error) == ("PermissionDenied", True)
    assert 'patch configmaps (API group "") in namespace "llm"' in error.message
    assert "system:serviceaccount:ops:worker" in error.message
    evidence = FailureEvidence.from_details(error.details)
    assert evidence is not None
    return dict(evidence.data)


def test_a_403_naming_a_rule_is_permission_denied_with_verb_resource_and_namespace() -> None:
    error = api_failure(KubeError(403, f"PATCH /api/v1/namespaces/llm/configmaps: {DENIED}"))
    data = _denied_evidence(error)
    assert (data["verb"], data["resource"], data["group"], data["namespace"]) == (
        "patch", "configmaps", "", "llm"
    )


def test_a_refused_apply_for_lack_of_permission_is_permission_denied_not_rejected() -> None:
    error = api_failure(ObjectRefused(KubeError(403, DENIED), REF, "apply", False))
    _denied_evidence(error)


def test_a_helm_failure_quoting_a_refusal_is_permission_denied() -> None:
    run = HelmRun(1, "", f"Error: UPGRADE FAILED: {DENIED}\n")
    error = helm_failure(HelmCommandFailed("upgrade of infra", ["helm", "upgrade"], run))
    _denied_evidence(error)


class _Proxy:
    """A client whose pod proxy always answers `answer` (or raises it)."""

    def __init__(self, answer: tuple[int, bytes] | KubeError) -> None:
        self.answer = answer

    def pod_proxy(self, namespace: str, pod: str, port: int, path: str) -> tuple[int, bytes]:
        if isinstance(self.answer, KubeError):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "if_last"),
    [
        ((400, b"error trying to reach service: tls: failed to verify"),
         FailureReason.POD_PROXY_REFUSED),
        ((500, b"Internal Server Error"), FailureReason.CLUSTER_UNREACHABLE),
        (ApiUnavailable(0, "connection refused"), FailureReason.CLUSTER_UNREACHABLE),
    ],
)
def test_metrics_that_stay_unreadable_name_what_refused_them_if_retries_run_out(
    monkeypatch: pytest.MonkeyPatch, answer: tuple[int, bytes] | KubeError, if_last: FailureReason
) -> None:
    monkeypatch.setattr(verification, "METRICS_RETRY_SECONDS", 0.0)
    with pytest.raises(verification.MetricsUnreadable) as raised:
        verification._pod_metrics(cast(KubeClient, _Proxy(answer)), "llm-d", "decode-0", 8200)
    # Not "VerificationFailed": nothing showed that a pod did not serve.
    assert raised.value.reason == if_last
    assert "cannot read /metrics of pod decode-0" in str(raised.value)
