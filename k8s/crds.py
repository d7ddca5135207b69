"""Where CRDs come from: a builtin bundle, YAML files or a URL, or a kustomization via kubectl.

Where it sits: under the apply_crds activity (activities/kube.py), which applies what
`crd_documents` returns with k8s/objects.py, or lets kubectl apply a kustomization (kustomize
needs kubectl); the names kubectl reports are the CRDs to wait for.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

import manifests
from embedded.tools import tool_binary
from manifests import CrdBundleName
from spec.rollout import Target
from spec.yaml_documents import load_documents

KUBECTL_ENV = "LLMD_KUBECTL"
_YAML_SUFFIXES = (".yaml", ".yml")


class KubectlFailed(Exception):
    """kubectl refused the kustomization; `message` carries the end of its stderr."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def crd_documents(source: str, bundle: CrdBundleName) -> list[dict[str, Any]]:
    """The CRDs of a builtin bundle, a local file or directory of YAML, or a URL to a YAML file."""
    if source == "builtin":
        return manifests.builtin_crds(bundle)
    if source.startswith(("http://", "https://")):
        response = httpx.get(source, follow_redirects=True, timeout=30.0)
        response.raise_for_status()
        return _crds_in(response.text)
    path = Path(source)
    files = (
        sorted(p for p in path.iterdir() if p.suffix in _YAML_SUFFIXES) if path.is_dir() else [path]
    )
    documents: list[dict[str, Any]] = []
    for file in files:
        documents += _crds_in(file.read_text(encoding="utf-8"))
    return documents


def _crds_in(text: str) -> list[dict[str, Any]]:
    return [
        d
        for d in load_documents(text)
        if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
    ]


def is_kustomization(source: str) -> bool:
    return source.startswith(("http://", "https://")) and not source.split("?")[0].endswith(
        _YAML_SUFFIXES
    )


def kubectl_apply_kustomization(target: Target, source: str) -> list[str]:
    """`kubectl apply --server-side -k URL` (kustomize needs kubectl); the CRD names applied."""
    command = [tool_binary("kubectl", KUBECTL_ENV), "apply", "--server-side", "-k", source]
    command += ["--field-manager", "llmd-rollout", "--force-conflicts", "-o", "name"]
    if target.kubeconfig:
        command += ["--kubeconfig", target.kubeconfig]
    if target.context:
        command += ["--context", target.context]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise KubectlFailed(f"kubectl apply -k {source} failed: {done.stderr.strip()[-800:]}")
    return [
        line.split("/", 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith("customresourcedefinition")
    ]
