"""The demo charts in charts/ lint clean with helm v4 and v3 and render what they stand in for.

llm-d-infra-demo is compared with rendered/infra-wide-ep.rendered.yaml (llm-d-infra v1.1.0 with
the wide-EP values); the other two with what istiod and the LWS chart create.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from manifests.crds import crd_text
from tests.manifests.conftest import REPO, example
from tests.manifests.kube_schemas import BUILTIN_MODELS, CrdVersion, crd_problems, model_problems

Schemas = dict[tuple[str, str], CrdVersion]
CHARTS = REPO / "charts"
CHART_NAMES = ("llm-d-infra-demo", "gateway-provider-demo", "lws-demo")
HELM_TIMEOUT_SECONDS = 60
HELM_BOOKKEEPING = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
DESTINATION_RULE_API = "networking.istio.io/v1beta1/DestinationRule"
LWS_CRD = "leaderworkerset.x-k8s.io_leaderworkersets.yaml"


def _helm(binary: str) -> Path:
    path = Path(sys.executable).parent / binary
    if not path.is_file():
        message = f"{path} is missing: run `.venv/bin/python scripts/install_tools.py`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(command: list[str]) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=HELM_TIMEOUT_SECONDS, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _template(chart: str, release: str, *extra: str) -> list[dict[str, Any]]:
    helm = _helm("helm")
    text = _run([str(helm), "template", release, str(CHARTS / chart), *extra])
    return [document for document in yaml.safe_load_all(text) if document]


def _infra_values(tmp_path: Path) -> Path:
    values = tmp_path / "infra-values.yaml"
    values.write_text(yaml.safe_dump(example("wide-ep-lws-as-shipped.yaml").infra.values))
    return values


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """Without Helm's bookkeeping labels; Istio's overlay documents compared as YAML, not text."""
    labels = obj["metadata"].get("labels", {})
    for key in HELM_BOOKKEEPING:
        labels.pop(key, None)
    if not obj["metadata"].get("annotations"):
        obj["metadata"].pop("annotations", None)
    if obj["kind"] == "ConfigMap":
        obj["data"] = {key: yaml.safe_load(value) for key, value in obj["data"].items()}
    return obj


@pytest.mark.parametrize("binary", ["helm", "helm3"])
@pytest.mark.parametrize("chart", CHART_NAMES)
def test_demo_chart_passes_helm_lint_strict(chart: str, binary: str) -> None:
    helm = _helm(binary)
    output = _run([str(helm), "lint", "--strict", str(CHARTS / chart)])
    assert "0 chart(s) failed" in output


def test_lws_demo_ships_our_leader_worker_set_crd_byte_for_byte() -> None:
    shipped = (CHARTS / "lws-demo" / "crds" / LWS_CRD).read_bytes()
    assert shipped == crd_text(LWS_CRD).encode("utf-8")


def test_lws_demo_names_the_controller_version() -> None:
    (info,) = _template("lws-demo", "lws", "--namespace", "lws-system")
    assert (info["kind"], info["metadata"]["name"]) == ("ConfigMap", "lws-controller-info")
    assert info["data"]["version"] == "0.7.0"
    assert model_problems(info, "V1ConfigMap") == []


@pytest.mark.reference
def test_gateway_provider_demo_registers_the_istio_gateway_class(
    real_crd_schemas: Schemas, our_crd_schemas: Schemas
) -> None:
    (gateway_class,) = _template("gateway-provider-demo", "istiod", "--namespace", "istio-system")
    assert gateway_class["kind"] == "GatewayClass"
    assert gateway_class["metadata"]["name"] == "istio"
    assert gateway_class["spec"]["controllerName"] == "istio.io/gateway-controller"
    key = (gateway_class["apiVersion"], gateway_class["kind"])
    assert crd_problems(gateway_class, real_crd_schemas[key].schema) == []
    assert crd_problems(gateway_class, our_crd_schemas[key].schema) == []


@pytest.mark.reference
def test_infra_demo_renders_the_reference_gateway_parameters_and_destination_rule(
    tmp_path: Path, reference: Path
) -> None:
    ours = _template(
        "llm-d-infra-demo",
        "infra-wide-ep",
        "--namespace",
        "llm-d-wide-ep",
        "--values",
        str(_infra_values(tmp_path)),
        "--api-versions",
        DESTINATION_RULE_API,
    )
    text = (reference / "rendered" / "infra-wide-ep.rendered.yaml").read_text(encoding="utf-8")
    theirs = {d["kind"]: d for d in yaml.safe_load_all(text) if d}
    by_kind = {obj["kind"]: obj for obj in ours}
    # Intended: no Ingress by default (upstream's later default; v1.1.0's went to no Service).
    assert sorted(by_kind) == ["ConfigMap", "DestinationRule", "Gateway"]
    for kind in ("ConfigMap", "Gateway"):
        assert _comparable(by_kind[kind]) == _comparable(theirs[kind]), kind
    # The reference DestinationRule has no labels; ours carries the chart's.
    assert by_kind["DestinationRule"]["spec"] == theirs["DestinationRule"]["spec"]
    assert by_kind["DestinationRule"]["metadata"]["name"] == "infra-wide-ep-inference-gateway"


def test_infra_demo_skips_the_destination_rule_when_istio_api_is_not_served(tmp_path: Path) -> None:
    values = str(_infra_values(tmp_path))
    kinds = [
        obj["kind"] for obj in _template("llm-d-infra-demo", "infra-wide-ep", "--values", values)
    ]
    assert sorted(kinds) == ["ConfigMap", "Gateway"]


def test_infra_demo_ingress_targets_the_service_istio_creates() -> None:
    objects = _template("llm-d-infra-demo", "infra-wide-ep", "--set", "ingress.enabled=true")
    (ingress,) = [obj for obj in objects if obj["kind"] == "Ingress"]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "infra-wide-ep-inference-gateway.localhost"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "infra-wide-ep-inference-gateway-istio", "port": {"number": 80}}


@pytest.mark.reference
def test_demo_chart_objects_validate_against_both_crds_and_kubernetes_models(
    tmp_path: Path, real_crd_schemas: Schemas, our_crd_schemas: Schemas
) -> None:
    objects = _template(
        "llm-d-infra-demo",
        "infra-wide-ep",
        "--values",
        str(_infra_values(tmp_path)),
        "--set",
        "ingress.enabled=true",
    )
    objects += _template("gateway-provider-demo", "istiod")
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in BUILTIN_MODELS:
            assert model_problems(obj, BUILTIN_MODELS[key]) == [], key
        elif key in our_crd_schemas:
            assert crd_problems(obj, real_crd_schemas[key].schema) == [], key
            assert crd_problems(obj, our_crd_schemas[key].schema) == [], key
