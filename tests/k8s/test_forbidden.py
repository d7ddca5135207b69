"""The API server's 403 text read back into the refused verb, resource, group and namespace."""

from __future__ import annotations

import pytest

from k8s.forbidden import Forbidden, forbidden_in

SA = "system:serviceaccount:llmd:llmd-rollout-worker"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f'pods "web" is forbidden: User "{SA}" cannot get resource "pods/log" in API group ""'
            ' in the namespace "llm-d-wide-ep"',
            Forbidden(SA, "get", "pods/log", "", "llm-d-wide-ep"),
        ),
        (
            f'namespaces is forbidden: User "{SA}" cannot create resource "namespaces" in API'
            ' group "" at the cluster scope',
            Forbidden(SA, "create", "namespaces"),
        ),
        (
            # helm quotes the Status message inside its own error line.
            "Error: INSTALLATION FAILED: query: failed to query with labels: secrets is "
            f'forbidden: User "{SA}" cannot list resource "secrets" in API group "" in the '
            'namespace "lws-system"',
            Forbidden(SA, "list", "secrets", "", "lws-system"),
        ),
        (
            # kubectl's form, an API group with dots.
            'Error from server (Forbidden): customresourcedefinitions.apiextensions.k8s.io "x" is'
            f' forbidden: User "{SA}" cannot patch resource "customresourcedefinitions" in API'
            ' group "apiextensions.k8s.io" at the cluster scope',
            Forbidden(SA, "patch", "customresourcedefinitions", "apiextensions.k8s.io"),
        ),
        (
            'forbidden: User "bob" cannot get path "/clustersim/admin/state"',
            Forbidden("bob", "get", path="/clustersim/admin/state"),
        ),
    ],
    ids=["namespaced-subresource", "cluster-scope", "helm-stderr", "kubectl-group", "path"],
)
def test_each_form_of_the_refusal_names_what_was_refused(text: str, expected: Forbidden) -> None:
    assert forbidden_in(text) == expected


def test_the_message_names_the_rule_to_grant() -> None:
    found = Forbidden(SA, "watch", "leaderworkersets", "leaderworkerset.x-k8s.io", "llm")
    assert found.what == (
        'watch leaderworkersets (API group "leaderworkerset.x-k8s.io") in namespace "llm"'
    )
    assert SA in found.message and found.what in found.message
    assert "at the cluster scope" in Forbidden(SA, "list", "nodes").what


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/v1/pods: HTTP 403: forbidden",
        'Unauthorized: User "x" is not authenticated',
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
    ],
)
def test_text_without_an_rbac_refusal_is_not_one(text: str) -> None:
    assert forbidden_in(text) is None
