"""The one classification of API, helm and kubectl errors: what a busy API server says in every
shape is retryable; validation, Forbidden and NotFound are not, and Forbidden names who may not
do what where."""

from __future__ import annotations

import pytest

from k8s.errors import classify_status, classify_text

# Real wordings: apimachinery Status messages, client-go errors as helm/kubectl print them.
RETRYABLE_OUTPUT = [
    # clustersim's Status message as helm prints it (the case issue 14 reports).
    "Error: INSTALLATION FAILED: failed to create resource: clustersim injected fault 1a2b3c4d "
    "(500 InternalError)",
    "Error: UPGRADE FAILED: Internal error occurred: resource quota evaluation timed out",
    'Error: an error on the server ("unknown") has prevented the request from succeeding '
    "(get deployments.apps lws-controller-manager)",
    "Error: the server is currently unable to handle the request (get leaderworkersets)",
    "Error: the server has received too many requests and has asked us to try again later",
    "Error: the server was unable to return a response in the time allotted, but may still be "
    "processing the request (post services)",
    "Error: Timeout: request did not complete within requested timeout - context deadline exceeded",
    "Error: etcdserver: request timed out",
    "Error: etcdserver: leader changed",
    'Error: Get "https://127.0.0.1:6443/api": dial tcp 127.0.0.1:6443: connect: connection refused',
    'Error: Get "https://10.0.0.1:6443/version": read tcp 10.0.0.2:5:>10.0.0.1:6443: read: '
    "connection reset by peer",
    'Error: Get "https://10.0.0.1:6443/version": net/http: TLS handshake timeout',
    'Error: Get "https://10.0.0.1:6443/api/v1/pods": dial tcp 10.0.0.1:6443: i/o timeout',
    'Error: Get "https://10.0.0.1:6443/apis": unexpected EOF',
    "Error: UPGRADE FAILED: release x failed: EOF",
    "Error: http2: client connection lost",
    "Error: rpc error: code = Unavailable desc = transport is closing",
    "W1206 watch.go:99] watch of *v1.Pod ended with: too old resource version: 123 (456)",
    "Error: Internal Server Error",
    "(503 ServiceUnavailable)",
    "(429 TooManyRequests)",
    # A repair uninstall the API server cut short (fault matrix, 503 at 20%).
    "uninstall of infra-wide-ep stuck in uninstalling failed: Error: failed to delete release: "
    "infra-wide-ep",
]

TERMINAL_OUTPUT = [
    'Error: UPGRADE FAILED: template: demo/templates/x.yaml:3: function "nope" not defined',
    'Error: INSTALLATION FAILED: Deployment.apps "x" is invalid: spec.replicas: Invalid value: '
    "-1: must be greater than or equal to 0",
    'Error: INSTALLATION FAILED: namespaces "missing" not found',
    "Error: chart requires kubeVersion: >=1.40 which is incompatible with Kubernetes v1.31",
    "Error: UPGRADE FAILED: context deadline exceeded",
]


@pytest.mark.parametrize("output", RETRYABLE_OUTPUT)
def test_a_busy_or_unreachable_api_server_is_retryable(output: str) -> None:
    found = classify_text(output)
    assert found.retryable, output
    assert found.permission is None


@pytest.mark.parametrize("output", TERMINAL_OUTPUT)
def test_a_request_that_is_wrong_is_terminal(output: str) -> None:
    assert not classify_text(output).retryable, output


def test_forbidden_names_verb_resource_and_namespace() -> None:
    output = (
        'Error: INSTALLATION FAILED: leaderworkersets.leaderworkerset.x-k8s.io "wide-ep" is '
        'forbidden: User "system:serviceaccount:ci:deployer" cannot create resource '
        '"leaderworkersets" in API group "leaderworkerset.x-k8s.io" in the namespace "llm-d"'
    )
    found = classify_text(output)
    assert not found.retryable
    assert found.permission is not None
    permission = found.permission
    assert (
        permission.verb, permission.resource, permission.group, permission.namespace,
        permission.user,
    ) == (
        "create", "leaderworkersets", "leaderworkerset.x-k8s.io", "llm-d",
        "system:serviceaccount:ci:deployer",
    )
    assert permission.what == (
        'create leaderworkersets (API group "leaderworkerset.x-k8s.io") in namespace "llm-d"'
    )


def test_cluster_scoped_forbidden_has_no_namespace() -> None:
    found = classify_status(
        403,
        {
            "kind": "Status",
            "reason": "Forbidden",
            "message": 'nodes is forbidden: User "bob" '
            'cannot list resource "nodes" in API group "" at the cluster scope',
        },
        "GET /api/v1/nodes: HTTP 403",
    )
    assert found.permission is not None
    assert (found.permission.verb, found.permission.resource) == ("list", "nodes")
    assert found.permission.namespace == ""
    assert "at the cluster scope" in found.permission.what


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [
        (500, "InternalError", True),
        (503, "ServiceUnavailable", True),
        (504, "Timeout", True),
        (429, "TooManyRequests", True),
        (0, "", True),
        (422, "Invalid", False),
        (400, "BadRequest", False),
        (404, "NotFound", False),
        (409, "Conflict", False),
    ],
)
def test_status_answers(status: int, reason: str, retryable: bool) -> None:
    body = {"kind": "Status", "code": status, "reason": reason, "message": "m"}
    assert classify_status(status, body, "m").retryable is retryable
