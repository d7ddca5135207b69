"""RBAC authorization against a real clustersim server process: each rule kind allows what it
grants and nothing else, for static-token users and groups and for ServiceAccount tokens minted
by TokenRequest; denials are the real 403 Status; access reviews and `kubectl auth can-i` answer
from the same rules.

The server runs with a token file of three users: the admin (a bare token, `system:masters`),
`alice` in group `team-a`, and `bob` in no group of his own.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver_process import start_server, stop_process

KUBECTL = Path(sys.executable).parent / "kubectl"
ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


@dataclass
class Answer:
    status: int
    body: Any


@dataclass
class Server:
    url: str
    ca: Path
    kubeconfig: Path

    def call(self, token: str, method: str, path: str, body: Any = None) -> Answer:
        request = urllib.request.Request(
            self.url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                     "Accept": "application/json"})
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return Answer(status, json.loads(raw))
        except ValueError:
            return Answer(status, raw.decode(errors="replace"))

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.call(ADMIN, method, path, body)
        assert answer.status < 300, answer
        return answer.body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("rbac")
    token_file = directory / "tokens.csv"
    token_file.write_text(f'{ADMIN}\n{ALICE},alice,uid-alice,"team-a"\n{BOB},bob,uid-bob\n')
    process, kubeconfig = start_server(directory / "data", "--token-file", str(token_file))
    config = yaml.safe_load(kubeconfig.read_text())
    try:
        yield Server(config["clusters"][0]["cluster"]["server"],
                     directory / "data" / "pki" / "ca.crt", kubeconfig)
    finally:
        stop_process(process)


@pytest.fixture
def namespace(server: Server) -> str:
    name = f"rbac-{uuid.uuid4().hex[:8]}"
    server.admin("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def role(server: Server, namespace: str, name: str, rules: list[dict[str, Any]]) -> None:
    server.admin("POST", f"{RBAC}/namespaces/{namespace}/roles",
                 {"metadata": {"name": name}, "rules": rules})


def cluster_role(server: Server, name: str, rules: list[dict[str, Any]],
                 **extra: Any) -> None:
    server.admin("POST", f"{RBAC}/clusterroles",
                 {"metadata": {"name": name, **extra.pop("metadata", {})}, "rules": rules,
                  **extra})


def bind(server: Server, namespace: str | None, role_kind: str, role_name: str,
         subject: dict[str, Any]) -> None:
    name = f"b-{uuid.uuid4().hex[:6]}"
    body = {"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                        "name": role_name},
            "subjects": [subject]}
    if namespace is None:
        server.admin("POST", f"{RBAC}/clusterrolebindings", body)
    else:
        server.admin("POST", f"{RBAC}/namespaces/{namespace}/rolebindings", body)


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def forbidden(answer: Answer, message: str) -> None:
    assert answer.status == 403, answer
    assert answer.body["reason"] == "Forbidden", answer.body
    assert answer.body["message"] == message, answer.body


def test_the_default_admin_token_is_cluster_admin(server: Server) -> None:
    assert server.call(ADMIN, "GET", "/api/v1/nodes").status == 200
    assert server.call(ADMIN, "GET", "/clustersim/admin/state").status == 200
    who = server.admin("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                       {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert who["status"]["userInfo"]["username"] == "clustersim-admin"
    assert "system:masters" in who["status"]["userInfo"]["groups"]


def test_a_role_binding_grants_its_verbs_in_its_namespace_only(server: Server,
                                                                namespace: str) -> None:
    role(server, namespace, "pod-reader",
         [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    pods = f"/api/v1/namespaces/{namespace}/pods"
    forbidden(server.call(BOB, "GET", pods),
              f'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in '
              f'the namespace "{namespace}"')
    bind(server, namespace, "Role", "pod-reader", user("bob"))
    assert server.call(BOB, "GET", pods).status == 200
    denied = server.call(BOB, "DELETE", f"{pods}/web")
    forbidden(denied, f'pods "web" is forbidden: User "bob" cannot delete resource "pods" in '
                      f'API group "" in the namespace "{namespace}"')
    assert denied.body["details"] == {"name": "web", "kind": "pods"}
    forbidden(server.call(BOB, "GET", "/api/v1/namespaces/default/pods"),
              'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in '
              'the namespace "default"')
    forbidden(server.call(BOB, "GET", "/api/v1/nodes"),
              'nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at '
              "the cluster scope")
    forbidden(server.call(BOB, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments"),
              'deployments.apps is forbidden: User "bob" cannot list resource "deployments" in '
              f'API group "apps" in the namespace "{namespace}"')


def test_group_subjects_and_cluster_role_bindings(server: Server, namespace: str) -> None:
    cluster_role(server, f"node-reader-{namespace}",
                 [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}])
    assert server.call(ALICE, "GET", "/api/v1/nodes").status == 403
    bind(server, None, "ClusterRole", f"node-reader-{namespace}",
         {"kind": "Group", "name": "team-a", "apiGroup": "rbac.authorization.k8s.io"})
    assert server.call(ALICE, "GET", "/api/v1/nodes").status == 200
    assert server.call(BOB, "GET", "/api/v1/nodes").status == 403  # not in team-a


def test_a_role_binding_to_a_cluster_role_grants_it_in_that_namespace(server: Server,
                                                                      namespace: str) -> None:
    cluster_role(server, f"cm-writer-{namespace}",
                 [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}])
    bind(server, namespace, "ClusterRole", f"cm-writer-{namespace}", user("bob"))
    body = {"metadata": {"name": "settings"}, "data": {"a": "1"}}
    assert server.call(BOB, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                       body).status == 201
    assert server.call(BOB, "POST", "/api/v1/namespaces/default/configmaps",
                       body).status == 403


def test_resource_names_limit_a_rule_to_the_named_objects(server: Server,
                                                          namespace: str) -> None:
    for name in ("allowed", "other"):
        server.admin("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                     {"metadata": {"name": name}})
    role(server, namespace, "one-config", [{"apiGroups": [""], "resources": ["configmaps"],
                                            "resourceNames": ["allowed"], "verbs": ["get"]}])
    bind(server, namespace, "Role", "one-config", user("bob"))
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    assert server.call(BOB, "GET", f"{configmaps}/allowed").status == 200
    forbidden(server.call(BOB, "GET", f"{configmaps}/other"),
              f'configmaps "other" is forbidden: User "bob" cannot get resource "configmaps" in '
              f'API group "" in the namespace "{namespace}"')
    assert server.call(BOB, "GET", configmaps).status == 403  # a list names no object


def test_subresources_are_granted_apart_from_their_resource(server: Server,
                                                            namespace: str) -> None:
    server.admin("POST", f"/api/v1/namespaces/{namespace}/pods", {
        "metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    server.admin("POST", f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}})
    pod = f"/api/v1/namespaces/{namespace}/pods/web"
    service_proxy = f"/api/v1/namespaces/{namespace}/services/svc/proxy/"
    for path, resource in ((f"{pod}/log", "pods/log"), (f"{pod}/proxy/", "pods/proxy")):
        forbidden(server.call(BOB, "GET", path),
                  f'pods "web" is forbidden: User "bob" cannot get resource "{resource}" in '
                  f'API group "" in the namespace "{namespace}"')
    forbidden(server.call(BOB, "GET", service_proxy),
              f'services "svc" is forbidden: User "bob" cannot get resource "services/proxy" '
              f'in API group "" in the namespace "{namespace}"')
    role(server, namespace, "logs-and-proxies", [
        {"apiGroups": [""], "resources": ["pods/log", "pods/proxy", "services/proxy"],
         "verbs": ["get"]}])
    bind(server, namespace, "Role", "logs-and-proxies", user("bob"))
    # allowed now: the answers are the server's own (the pod has no node, the service no
    # endpoints), not 403
    assert server.call(BOB, "GET", f"{pod}/log").status == 400
    assert server.call(BOB, "GET", f"{pod}/proxy/").status == 503
    assert server.call(BOB, "GET", service_proxy).status == 503
    # the subresource grants nothing on the pod itself
    assert server.call(BOB, "GET", pod).status == 403


def test_non_resource_urls(server: Server, namespace: str) -> None:
    # discovery is open to every authenticated user (system:discovery)
    assert server.call(BOB, "GET", "/apis").status == 200
    assert server.call(BOB, "GET", "/api/v1").status == 200
    forbidden(server.call(BOB, "GET", "/clustersim/admin/state"),
              'forbidden: User "bob" cannot get path "/clustersim/admin/state"')
    cluster_role(server, f"sim-admin-reader-{namespace}",
                 [{"nonResourceURLs": ["/clustersim/admin/*"], "verbs": ["get"]}])
    bind(server, None, "ClusterRole", f"sim-admin-reader-{namespace}", user("bob"))
    assert server.call(BOB, "GET", "/clustersim/admin/state").status == 200
    assert server.call(BOB, "DELETE", "/clustersim/admin/faults").status == 403


def test_aggregated_cluster_roles_gather_the_rules_they_select(server: Server,
                                                               namespace: str) -> None:
    label = f"example.com/aggregate-{namespace}"
    cluster_role(server, f"aggregate-{namespace}", [],
                 aggregationRule={"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]})
    bind(server, namespace, "ClusterRole", f"aggregate-{namespace}", user("alice"))
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    assert server.call(ALICE, "GET", secrets).status == 403
    cluster_role(server, f"part-{namespace}",
                 [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
                 metadata={"labels": {label: "true"}})
    assert server.call(ALICE, "GET", secrets).status == 200


def test_the_default_view_role_reads_but_does_not_write_or_see_secrets(
        server: Server, namespace: str) -> None:
    bind(server, namespace, "ClusterRole", "view", user("bob"))
    base = f"/api/v1/namespaces/{namespace}"
    assert server.call(BOB, "GET", f"{base}/pods").status == 200
    assert server.call(BOB, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments"
                       ).status == 200
    assert server.call(BOB, "GET", f"{base}/secrets").status == 403
    assert server.call(BOB, "POST", f"{base}/configmaps",
                       {"metadata": {"name": "x"}}).status == 403


def _token(server: Server, namespace: str, account: str) -> str:
    answer = server.admin(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 3600}})
    assert answer["kind"] == "TokenRequest"
    assert answer["status"]["expirationTimestamp"]
    token: str = answer["status"]["token"]
    return token


def test_service_account_tokens_are_authorized_as_their_account(server: Server,
                                                                 namespace: str) -> None:
    server.admin("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"metadata": {"name": "worker"}})
    token = _token(server, namespace, "worker")
    account = f"system:serviceaccount:{namespace}:worker"
    pods = f"/api/v1/namespaces/{namespace}/pods"
    forbidden(server.call(token, "GET", pods),
              f'pods is forbidden: User "{account}" cannot list resource "pods" in API group '
              f'"" in the namespace "{namespace}"')
    role(server, namespace, "pod-lister",
         [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    bind(server, namespace, "Role", "pod-lister",
         {"kind": "ServiceAccount", "name": "worker", "namespace": namespace})
    assert server.call(token, "GET", pods).status == 200
    # the groups every ServiceAccount is in
    cluster_role(server, f"ns-lister-{namespace}",
                 [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}])
    assert server.call(token, "GET", f"/api/v1/namespaces/{namespace}").status == 403
    bind(server, None, "ClusterRole", f"ns-lister-{namespace}",
         {"kind": "Group", "name": f"system:serviceaccounts:{namespace}",
          "apiGroup": "rbac.authorization.k8s.io"})
    assert server.call(token, "GET", f"/api/v1/namespaces/{namespace}").status == 200
    # a token dies with its ServiceAccount, even one of the same name made again
    server.admin("DELETE", f"/api/v1/namespaces/{namespace}/serviceaccounts/worker")
    assert server.call(token, "GET", pods).status == 401
    server.admin("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"metadata": {"name": "worker"}})
    assert server.call(token, "GET", pods).status == 401
    assert server.call(token + "x", "GET", pods).status == 401


def test_minting_a_token_needs_create_on_serviceaccounts_token(server: Server,
                                                               namespace: str) -> None:
    server.admin("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"metadata": {"name": "worker"}})
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/worker/token"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    forbidden(server.call(BOB, "POST", path, request),
              f'serviceaccounts "worker" is forbidden: User "bob" cannot create resource '
              f'"serviceaccounts/token" in API group "" in the namespace "{namespace}"')
    too_short = server.call(ADMIN, "POST", path, {**request, "spec": {"expirationSeconds": 60}})
    assert too_short.status == 422, too_short


def test_access_reviews_answer_from_the_same_rules(server: Server, namespace: str) -> None:
    role(server, namespace, "log-reader",
         [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}])
    bind(server, namespace, "Role", "log-reader", user("alice"))

    def review(spec: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = server.admin(
            "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
             "spec": spec})
        return answer["status"]

    log = {"namespace": namespace, "verb": "get", "resource": "pods", "subresource": "log"}
    allowed = review({"user": "alice", "resourceAttributes": log})
    assert allowed == {"allowed": True, "reason": f'RBAC: allowed by RoleBinding '
                       f'"{_binding_name(server, namespace)}/{namespace}" of Role "log-reader" '
                       f'to User "alice"'}
    assert review({"user": "bob", "resourceAttributes": log}) == {"allowed": False}
    assert review({"user": "bob", "groups": ["system:masters"],
                   "resourceAttributes": log})["allowed"] is True
    own = server.call(ALICE, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                      {"apiVersion": "authorization.k8s.io/v1",
                       "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": log}})
    assert own.status == 201 and own.body["status"]["allowed"] is True
    # reviewing others needs a grant: alice may only review herself
    other = server.call(ALICE, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                        {"spec": {"user": "bob", "resourceAttributes": log}})
    assert other.status == 403


def _binding_name(server: Server, namespace: str) -> str:
    bindings = server.admin("GET", f"{RBAC}/namespaces/{namespace}/rolebindings")["items"]
    name: str = bindings[0]["metadata"]["name"]
    return name


@pytest.fixture(scope="module")
def kubectl(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not KUBECTL.exists():
        pytest.skip(f"kubectl not installed at {KUBECTL} (run scripts/install_tools.py)")
    home = tmp_path_factory.mktemp("kubectl-home")
    shutil.copy(server.kubeconfig, home / "admin.kubeconfig")
    return home


def run_kubectl(home: Path, kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), *args], capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
             "KUBECONFIG": str(home / kubeconfig)})


def test_kubectl_create_token_and_auth_can_i(server: Server, namespace: str,
                                             kubectl: Path) -> None:
    server.admin("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"metadata": {"name": "deployer"}})
    created = run_kubectl(kubectl, "admin.kubeconfig", "create", "token", "deployer",
                          "-n", namespace, "--duration", "1h")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    config = yaml.safe_load(server.kubeconfig.read_text())
    config["users"][0]["user"] = {"token": token}
    (kubectl / f"{namespace}.kubeconfig").write_text(yaml.safe_dump(config))
    role(server, namespace, "deployer", [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}])
    bind(server, namespace, "Role", "deployer",
         {"kind": "ServiceAccount", "name": "deployer", "namespace": namespace})

    def can_i(*args: str, where: str = namespace) -> tuple[int, str]:
        result = run_kubectl(kubectl, f"{namespace}.kubeconfig", "auth", "can-i", *args,
                             "-n", where)
        return result.returncode, result.stdout.strip()

    assert can_i("create", "deployments.apps") == (0, "yes")
    assert can_i("delete", "deployments.apps") == (1, "no")
    assert can_i("get", "pods", "--subresource=log") == (0, "yes")
    assert can_i("get", "pods") == (1, "no")
    assert can_i("create", "deployments.apps", where="default") == (1, "no")
    whoami = run_kubectl(kubectl, f"{namespace}.kubeconfig", "auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{namespace}:deployer")
    denied = run_kubectl(kubectl, f"{namespace}.kubeconfig", "get", "pods", "-n", namespace)
    assert denied.returncode == 1
    assert (f'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:'
            f'{namespace}:deployer" cannot list resource "pods" in API group "" in the '
            f'namespace "{namespace}"') in denied.stderr
