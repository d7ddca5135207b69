"""The worker chart's RBAC on a clustersim: render it with the pinned helm, apply it with the
admin token, and hand out a kubeconfig that authenticates as the chart's ServiceAccount.

Where it sits: the least-privilege e2e (test_e2e_rbac.py) aims specs at `WorkerIdentity.kubeconfig`
instead of the admin one, so every request the real activities (and helm, kubectl) send is
decided by exactly the rules in charts/llmd-rollout-worker/values.yaml. A `RuleCut` renders the
chart with one of its rules (or one verb of it) left out, for the per-rule table; several cuts
leave several out at once.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from k8s.objects import delete_refs
from spec.activity_io import ObjectRef
from tests.simcluster import SimCluster
from tests.workflows.e2e import REPO, VENV_BIN

CHART = REPO / "charts" / "llmd-rollout-worker"
RELEASE = "llmd-worker"
# The namespace the worker itself is installed in (its ServiceAccount's).
WORKER_NAMESPACE = "llmd-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{WORKER_NAMESPACE}:{RELEASE}-llmd-rollout-worker"
RULE_SCOPES = ("targetNamespaceRules", "sharedNamespaceRules", "clusterRules")


def chart_rbac() -> dict[str, Any]:
    """The chart's `rbac` values, as the chart ships them."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return dict(values["rbac"])


@dataclass(frozen=True)
class RuleCut:
    """One rule of the chart to leave out, `scope` (a key of `rbac`) and its index there; or,
    with `verb`, only that verb of the rule."""

    scope: str
    index: int
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    verb: str = ""

    @property
    def id(self) -> str:
        scope = self.scope.removesuffix("Rules").removesuffix("Namespace")
        return f"{scope}:{','.join(self.resources)}" + (f":{self.verb}" if self.verb else "")

    @property
    def refused_verbs(self) -> tuple[str, ...]:
        return (self.verb,) if self.verb else self.verbs

    def only(self, verb: str) -> RuleCut:
        assert verb in self.verbs, (verb, self.verbs)
        return RuleCut(self.scope, self.index, self.api_groups, self.resources, self.verbs, verb)


def rule_cuts() -> list[RuleCut]:
    """Every rule the chart grants, in values.yaml order."""
    rbac = chart_rbac()
    return [
        RuleCut(scope, index, tuple(rule["apiGroups"]), tuple(rule["resources"]),
                tuple(rule["verbs"]))
        for scope in RULE_SCOPES
        for index, rule in enumerate(rbac[scope])
    ]


def rbac_without(cuts: Sequence[RuleCut] = ()) -> dict[str, Any]:
    """The chart's rbac values with each cut's rule (or its one verb) left out."""
    rbac = copy.deepcopy(chart_rbac())
    for cut in cuts:
        if cut.verb:
            rule = rbac[cut.scope][cut.index]
            rule["verbs"] = [v for v in rule["verbs"] if v != cut.verb]
    # Whole rules from the last index down, so the indices of those left still hold.
    for cut in sorted((c for c in cuts if not c.verb), key=lambda c: c.index, reverse=True):
        del rbac[cut.scope][cut.index]
    return rbac


def render(
    target_namespaces: list[str], rbac: dict[str, Any], workdir: Path
) -> list[dict[str, Any]]:
    """`helm template` of the chart's ServiceAccount and RBAC for these target namespaces."""
    values = {"hfToken": {"secretName": "llm-d-hf-token"},
              "rbac": {**rbac, "targetNamespaces": target_namespaces, "createNamespaces": True}}
    values_file = workdir / "worker-rbac-values.yaml"
    values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    done = subprocess.run(
        [str(VENV_BIN / "helm"), "template", RELEASE, str(CHART), "-n", WORKER_NAMESPACE,
         "-f", str(values_file), "--show-only", "templates/serviceaccount.yaml",
         "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@dataclass(frozen=True)
class WorkerIdentity:
    """The chart's ServiceAccount on `sim`, with a kubeconfig holding a TokenRequest token."""

    sim: SimCluster
    kubeconfig: Path

    def grant(self, target_namespaces: list[str], cuts: Sequence[RuleCut] = ()) -> None:
        """Apply the chart's rules (minus `cuts`) with the admin token; Roles and ClusterRoles
        are replaced, not merged, so a removed verb is really gone."""
        documents = render(target_namespaces, rbac_without(cuts), self.kubeconfig.parent)
        client = self.sim.client()
        try:
            roles = [ObjectRef.of(d) for d in documents if d["kind"] in ("Role", "ClusterRole")]
            delete_refs(client, roles, propagation="Background")
            for document in documents:
                client.apply(document, force=True)
        finally:
            client.close()


def worker_identity(
    sim: SimCluster, workdir: Path, target_namespaces: list[str], cuts: Sequence[RuleCut] = ()
) -> WorkerIdentity:
    """Create the namespace, apply the chart's RBAC (without `cuts`), mint a token
    (`kubectl create token`) and write a kubeconfig that uses it (the admin kubeconfig's
    cluster, the ServiceAccount as its user)."""
    kubectl = [str(VENV_BIN / "kubectl"), "--kubeconfig", str(sim.kubeconfig)]
    subprocess.run([*kubectl, "create", "namespace", WORKER_NAMESPACE],
                   capture_output=True, text=True, timeout=60, check=True)
    identity = WorkerIdentity(sim, workdir / "worker-sa.kubeconfig")
    identity.grant(target_namespaces, cuts)
    account = SERVICE_ACCOUNT.rsplit(":", 1)[1]
    token = subprocess.run(
        [*kubectl, "create", "token", account, "-n", WORKER_NAMESPACE, "--duration", "4h"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()
    config = yaml.safe_load(sim.kubeconfig.read_text(encoding="utf-8"))
    for user in config["users"]:
        user["user"] = {"token": token}
    identity.kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
    identity.kubeconfig.chmod(0o600)
    return identity
