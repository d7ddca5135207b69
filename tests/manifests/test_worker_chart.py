"""charts/llmd-rollout-worker: lints clean with helm v4 and v3, renders objects the Kubernetes
models accept, and its RBAC is exactly the rules in its values.yaml, which cover what a rollout
writes (the model service, the demo charts' objects, the EPP's own Role) and nothing is granted
without a reason. The rules table in the README is the same table."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

import worker
from manifests import render_model_service
from tests.manifests.conftest import REPO, example
from tests.manifests.kube_schemas import BUILTIN_MODELS, model_problems
from tests.manifests.test_charts import CHARTS, HELM_TIMEOUT_SECONDS, _helm, _run, _template

CHART = "llmd-rollout-worker"
VALUES = yaml.safe_load((CHARTS / CHART / "values.yaml").read_text())
RBAC = VALUES["rbac"]
REQUIRED = ("--set", "hfToken.secretName=hf-token")
EVERYTHING = (
    *REQUIRED,
    "--set", "temporal.apiKeySecret.name=temporal-api-key",
    "--set", "temporal.tlsSecret.name=temporal-client-tls",
    "--set", "temporal.tlsServerName=frontend.temporal",
    "--set", "temporal.profileSecret.name=temporal-profile",
    "--set", "rbac.createNamespaces=true",
)
# Rollout objects' resource names (plural) by (apiVersion, kind).
PLURALS = {
    ("v1", "ConfigMap"): "configmaps", ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts", ("apps/v1", "Deployment"): "deployments",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkersets",
    ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"): "inferencepools",
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceModel"): "inferencemodels",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateways",
    ("gateway.networking.k8s.io/v1", "GatewayClass"): "gatewayclasses",
    ("networking.istio.io/v1beta1", "DestinationRule"): "destinationrules",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "customresourcedefinitions",
}
# What writing an object takes: server-side apply (patch, create when absent), reading it back,
# listing what a rollout owns for teardown, and deleting it.
WRITE = {"get", "list", "create", "patch", "delete"}


def allows(rules: list[dict[str, Any]], group: str, resource: str, verbs: set[str]) -> bool:
    granted: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            granted |= set(rule["verbs"])
    return verbs <= granted


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def without_reasons(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in rule.items() if key != "reason"} for rule in rules]


@pytest.mark.parametrize("binary", ["helm", "helm3"])
@pytest.mark.parametrize("values", [(), EVERYTHING], ids=["defaults", "everything"])
def test_worker_chart_passes_helm_lint_strict(binary: str, values: tuple[str, ...]) -> None:
    helm = _helm(binary)

    output = _run([str(helm), "lint", "--strict", str(CHARTS / CHART), *values])

    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("values", [REQUIRED, EVERYTHING], ids=["required", "everything"])
def test_every_rendered_object_is_a_valid_kubernetes_object(values: tuple[str, ...]) -> None:
    objects = _template(CHART, "llmd", *values)

    kinds = {(obj["apiVersion"], obj["kind"]) for obj in objects}
    assert kinds - BUILTIN_MODELS.keys() == set()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        assert model_problems(obj, BUILTIN_MODELS[key]) == [], (key, obj["metadata"]["name"])


def test_the_hf_token_secret_is_required_and_named_in_the_error() -> None:
    helm = _helm("helm")

    result = subprocess.run(
        [str(helm), "template", "llmd", str(CHARTS / CHART)],
        capture_output=True, text=True, timeout=HELM_TIMEOUT_SECONDS, check=False,
    )

    assert result.returncode != 0
    assert "hfToken.secretName" in result.stderr


def test_rbac_is_exactly_the_rules_in_values_one_role_per_namespace() -> None:
    objects = _template(CHART, "llmd", *REQUIRED)

    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["rules"]
             for o in objects if o["kind"] == "Role"}
    (cluster_role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    expected = {
        **{(ns, "llmd-llmd-rollout-worker-target"): without_reasons(RBAC["targetNamespaceRules"])
           for ns in RBAC["targetNamespaces"]},
        **{(ns, "llmd-llmd-rollout-worker-shared"): without_reasons(RBAC["sharedNamespaceRules"])
           for ns in RBAC["sharedNamespaces"]},
    }
    assert roles == expected
    assert cluster_role["rules"] == without_reasons(RBAC["clusterRules"])
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(bindings) == len(roles) + 1
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "llmd-llmd-rollout-worker", "namespace": "default"}
        ]
    assert not [o for o in objects if o["kind"] == "Namespace"]


def test_every_rule_has_a_reason_and_no_rule_is_a_wildcard() -> None:
    for scope in ("targetNamespaceRules", "sharedNamespaceRules", "clusterRules"):
        for rule in RBAC[scope]:
            assert rule.get("reason"), rule
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_target_rules_cover_every_object_the_model_service_writes() -> None:
    spec = example("demo.yaml")
    rules = RBAC["targetNamespaceRules"]

    for obj in render_model_service(spec):
        key = (obj["apiVersion"], obj["kind"])
        assert allows(rules, group_of(obj["apiVersion"]), PLURALS[key], WRITE), key


def test_target_rules_hold_everything_the_epp_role_grants() -> None:
    """Kubernetes refuses to create a Role granting more than its creator holds."""
    spec = example("demo.yaml")
    (epp_role,) = [o for o in render_model_service(spec) if o["kind"] == "Role"]

    for rule in epp_role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert allows(
                    RBAC["targetNamespaceRules"], group, resource, set(rule["verbs"])
                ), (group, resource, rule["verbs"])


@pytest.mark.parametrize(
    ("chart", "scope"),
    [
        ("llm-d-infra-demo", "targetNamespaceRules"),
        ("lws-demo", "sharedNamespaceRules"),
        ("gateway-provider-demo", "clusterRules"),
    ],
)
def test_rules_cover_what_the_demo_charts_install(chart: str, scope: str) -> None:
    objects = _template(chart, "release", "--set", "ingress.enabled=true")

    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        namespaced = key != ("gateway.networking.k8s.io/v1", "GatewayClass")
        rules = RBAC[scope] if namespaced or scope == "clusterRules" else RBAC["clusterRules"]
        assert allows(rules, group_of(obj["apiVersion"]), PLURALS[key], WRITE), (chart, key)
    # helm keeps each release's record in a Secret of the release's namespace.
    assert allows(RBAC[scope] if scope != "clusterRules" else RBAC["sharedNamespaceRules"],
                  "", "secrets", {"get", "list", "create", "update", "delete"})


def test_cluster_rules_cover_crds_namespaces_and_capacity() -> None:
    rules = RBAC["clusterRules"]

    assert allows(rules, "apiextensions.k8s.io", "customresourcedefinitions",
                  {"get", "create", "patch", "watch"})
    assert allows(rules, "", "namespaces", {"get", "create", "patch"})
    assert allows(rules, "", "nodes", {"list", "watch"})
    assert allows(rules, "", "pods", {"list"})
    assert not allows(rules, "", "secrets", {"get"})


def test_probes_and_grace_period_match_the_worker() -> None:
    (deployment,) = [o for o in _template(CHART, "llmd", *REQUIRED) if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert str(ports["health"]) == env["LLMD_HEALTH_PORT"]["value"]
    assert str(ports["metrics"]) == env["LLMD_METRICS_PORT"]["value"]
    assert pod["terminationGracePeriodSeconds"] > worker.GRACEFUL_SHUTDOWN.total_seconds()
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert pod["serviceAccountName"] == "llmd-llmd-rollout-worker"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_readme_permissions_table_is_the_values_table() -> None:
    readme = (REPO / "README.md").read_text()

    for scope in ("targetNamespaceRules", "sharedNamespaceRules", "clusterRules"):
        for rule in RBAC[scope]:
            groups = ", ".join(group or "core" for group in rule["apiGroups"])
            row = (f"| {scope} | {groups} | {', '.join(rule['resources'])} | "
                   f"{', '.join(rule['verbs'])} | {rule['reason']} |")
            assert row in readme, row
