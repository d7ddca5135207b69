"""Invalid rollout specs: each is refused with one line naming its YAML path, never a traceback."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import starter

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "examples" / "wide-ep-lws.yaml").read_text())

Mutation = Callable[[dict[str, Any]], None]


def _walk(doc: dict[str, Any], path: str) -> tuple[Any, str]:
    *parents, leaf = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, leaf


def put(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        node, leaf = _walk(doc, path)
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        node, leaf = _walk(doc, path)
        del node[leaf]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(doc)

    return mutate


# (case id, mutation, the exact start of the line the CLI must print for it)
CASES: list[tuple[str, Mutation, str]] = [
    ("unknown-top-level-field", put("replicaCount", 2), "replicaCount: unknown field"),
    (
        "unknown-nested-field",
        put("modelService.decode.gpus", 8),
        "modelService.decode.gpus: unknown field",
    ),
    ("missing-namespace", drop("target.namespace"), "target.namespace: is required"),
    ("missing-model-service", drop("modelService"), "modelService: is required"),
    ("missing-prompt", drop("verification.prompt"), "verification.prompt: is required"),
    (
        "replicas-not-integer",
        put("modelService.decode.replicas", "two"),
        "modelService.decode.replicas: input should be a valid integer",
    ),
    (
        "replicas-zero",
        put("modelService.prefill.replicas", 0),
        "modelService.prefill.replicas: input should be greater than or equal to 1",
    ),
    (
        "gpu-arithmetic",
        put("modelService.decode.gpusPerPod", 8),
        "modelService.decode.gpusPerPod: must equal dataParallelLocal x tensorParallel"
        " (8 != 4 x 1)",
    ),
    (
        "gpu-arithmetic-tensor",
        put("modelService.prefill.tensorParallel", 2),
        "modelService.prefill.gpusPerPod: must equal dataParallelLocal x tensorParallel"
        " (8 != 8 x 2)",
    ),
    (
        "namespace-not-dns1123",
        put("target.namespace", "LLM_D"),
        "target.namespace: 'LLM_D' is not a valid DNS-1123 label",
    ),
    (
        "cluster-name-too-long",
        put("target.cluster", "c" * 64),
        "target.cluster: '" + "c" * 64 + "' is not a valid DNS-1123 label",
    ),
    (
        "release-not-dns1035",
        put("modelService.releaseName", "1ms"),
        "modelService.releaseName: '1ms' is not a valid DNS-1035 label",
    ),
    (
        "lws-name-too-long",
        put("modelService.releaseName", "m" * 30),
        "modelService.releaseName: makes the LeaderWorkerSet name",
    ),
    (
        "duration-malformed",
        put("budgets.modelLoad", "ten minutes"),
        "budgets.modelLoad: 'ten minutes' is not a duration",
    ),
    (
        "duration-zero",
        put("budgets.modelLoad", "0s"),
        "budgets.modelLoad: must be a positive duration, got 0s",
    ),
    (
        "capacity-wait-negative",
        put("budgets.capacityWait", -30),
        "budgets.capacityWait: must not be negative, got -30s",
    ),
    (
        "pause-negative",
        put("strategy.betweenRoles", {"pause": "-5s"}),
        "strategy.betweenRoles.pause: '-5s' is not a duration",
    ),
    (
        "phase-timeout-unknown",
        put("budgets.phaseTimeouts", {"deploy": "5m"}),
        "budgets.phaseTimeouts.deploy: unknown field",
    ),
    (
        "crd-version-malformed",
        put("dependencies.gatewayApiCrds.version", "latest"),
        "dependencies.gatewayApiCrds.version: 'latest' is not a version",
    ),
    (
        "chart-two-sources",
        put("infra.chart.path", "/charts/infra"),
        "infra.chart: set exactly one of repository (with name), oci or path",
    ),
    (
        "chart-without-version",
        drop("infra.chart.version"),
        "infra.chart.version: is required for a remote chart",
    ),
    (
        "chart-oci-scheme",
        put("dependencies.leaderWorkerSet.release.chart.oci", "registry.k8s.io/lws"),
        "dependencies.leaderWorkerSet.release.chart.oci: must start with oci://",
    ),
    (
        "chart-path-missing",
        put("infra.chart", {"path": "no-such-chart"}),
        "infra.chart.path: no Chart.yaml in",
    ),
    (
        "helm-release-name-too-long",
        put("infra.releaseName", "i" * 54),
        "infra.releaseName: '" + "i" * 54 + "' is not a valid Helm release name (lower case "
        "letters, digits and '-', starting and ending with a letter or digit, at most 53 "
        "characters)",
    ),
    (
        "helm-release-name-upper-case",
        put("gatewayProvider.releases.0.releaseName", "Istio-Base"),
        "gatewayProvider.releases[0].releaseName: 'Istio-Base' is not a valid Helm release name",
    ),
    (
        "chart-name-invalid",
        put("infra.chart.name", "Bad_Name!"),
        "infra.chart.name: 'Bad_Name!' is not a valid Helm chart name (lower case letters and "
        "digits, words separated by '-')",
    ),
    (
        "chart-oci-without-chart",
        put("dependencies.leaderWorkerSet.release.chart.oci", "oci://registry.k8s.io"),
        "dependencies.leaderWorkerSet.release.chart.oci: 'oci://registry.k8s.io' is not an OCI "
        "chart reference (oci://registry/path/chart, lower case path)",
    ),
    (
        "chart-oci-bad-chart-name",
        put("gatewayProvider.releases.1.chart.oci", "oci://gcr.io/istio-testing/charts/Bad_Name"),
        "gatewayProvider.releases[1].chart.oci: 'oci://gcr.io/istio-testing/charts/Bad_Name' is "
        "not an OCI chart reference",
    ),
    (
        "infra-gateway-class-invalid",
        put("infra.values.gateway.gatewayClassName", "Bad_Name!"),
        "infra.values.gateway.gatewayClassName: 'Bad_Name!' is not a valid DNS-1123 subdomain "
        "(lower case letters, digits, '-' and '.', at most 253 characters)",
    ),
    (
        "infra-gateway-class-not-a-string",
        put("infra.values.gateway.gatewayClassName", 8),
        "infra.values.gateway.gatewayClassName: must be a GatewayClass name, got 8",
    ),
    (
        "provider-gateway-class-invalid",
        put("gatewayProvider.gatewayClassName", "Bad_Name!"),
        "gatewayProvider.gatewayClassName: 'Bad_Name!' is not a valid DNS-1123 subdomain",
    ),
    (
        "values-file-missing",
        put("infra.valuesFiles", ["missing-values.yaml"]),
        "infra.valuesFiles[0]: no such file",
    ),
    (
        "provider-type-unknown",
        put("gatewayProvider.type", "nginx"),
        "gatewayProvider.type: input should be 'istio', 'kgateway' or 'none'",
    ),
    (
        "provider-none-with-releases",
        put("gatewayProvider.type", "none"),
        "gatewayProvider.releases: must be empty when type is none",
    ),
    (
        "provider-duplicate-release",
        put("gatewayProvider.releases.1.releaseName", "istio-base"),
        "gatewayProvider.releases[1].releaseName: is used by more than one release",
    ),
    (
        "lws-both-installed-and-release",
        put("dependencies.leaderWorkerSet.alreadyInstalled", True),
        "dependencies.leaderWorkerSet: set either alreadyInstalled: true or release, not both",
    ),
    (
        "lws-neither",
        drop("dependencies.leaderWorkerSet.release"),
        "dependencies.leaderWorkerSet: needs a release to install, or alreadyInstalled: true",
    ),
    (
        "hf-token-two-sources",
        put("modelService.hfToken.existingSecret", True),
        "modelService.hfToken: set exactly one of fromEnv or existingSecret: true",
    ),
    (
        "hf-token-bad-key",
        put("modelService.hfToken.secretKey", "HF TOKEN"),
        "modelService.hfToken.secretKey: 'HF TOKEN' is not a valid environment variable name",
    ),
    (
        "image-malformed",
        put("modelService.vllmImage", "ghcr.io/llm-d/LLM D:v1"),
        "modelService.vllmImage: 'ghcr.io/llm-d/LLM D:v1' is not a container image reference",
    ),
    (
        "memory-not-quantity",
        put("modelService.decode.memory", "lots"),
        "modelService.decode.memory: 'lots' is not a Kubernetes quantity",
    ),
    (
        "partition-beyond-replicas",
        put("strategy.decode", {"steps": [{"partition": 1}]}),
        "strategy.decode.steps[0].partition: must be below the role's replicas (1 >= 1)",
    ),
    (
        "partitions-not-decreasing",
        both(
            put("modelService.decode.replicas", 3),
            put("strategy.decode", {"steps": [{"partition": 1}, {"partition": 2}]}),
        ),
        "strategy.decode.steps[1].partition: partitions must decrease from step to step",
    ),
    (
        "surge-and-unavailable-zero",
        put("strategy.decode", {"maxUnavailable": 0, "maxSurge": 0}),
        "strategy.decode.maxSurge: cannot be 0 when maxUnavailable is 0",
    ),
    (
        "max-unavailable-word",
        put("strategy.prefill", {"maxUnavailable": "half"}),
        "strategy.prefill.maxUnavailable: must be an integer or a percentage, got 'half'",
    ),
    (
        "role-order-duplicate",
        put("strategy.roleOrder", ["decode", "decode"]),
        "strategy.roleOrder: must name prefill and decode, each exactly once",
    ),
    (
        "role-order-unknown-role",
        put("strategy.roleOrder", ["decode", "router"]),
        "strategy.roleOrder[1]: input should be 'prefill' or 'decode'",
    ),
    (
        "gateway-url-and-service",
        put("verification.gateway", {"service": "gw", "url": "http://10.0.0.1"}),
        "verification.gateway: set either service or url, not both",
    ),
    (
        "gateway-url-scheme",
        put("verification.gateway", {"url": "ftp://gateway"}),
        "verification.gateway.url: must be an http(s) URL",
    ),
    (
        "max-tokens-zero",
        put("verification.maxTokens", 0),
        "verification.maxTokens: input should be greater than or equal to 1",
    ),
    (
        "env-reserved",
        put("modelService.decode.env.0", {"name": "DP_SIZE", "value": "2"}),
        "modelService.decode.env[0].name: DP_SIZE is set by llmd-rollout or LeaderWorkerSet",
    ),
    (
        "env-dp-size-local-mismatch",
        put("modelService.decode.env.1", {"name": "DP_SIZE_LOCAL", "value": "8"}),
        "modelService.decode.env[1].value: DP_SIZE_LOCAL must equal dataParallelLocal (8 != 4)",
    ),
    (
        "env-value-and-value-from",
        put(
            "modelService.prefill.env.0",
            {"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ),
        "modelService.prefill.env[0]: set exactly one of value or valueFrom",
    ),
    (
        "rollback-policy-unknown",
        put("rollback.onFirstInstallFailure", "delete"),
        "rollback.onFirstInstallFailure: input should be 'uninstall' or 'keep'",
    ),
    (
        "api-version-wrong",
        put("apiVersion", "v1"),
        "apiVersion: input should be 'llmd-rollout.llm-d.ai/v1alpha1'",
    ),
    ("kind-wrong", put("kind", "Deployment"), "kind: input should be 'Rollout'"),
    (
        "in-cluster-with-kubeconfig",
        put(
            "target",
            {"cluster": "h200", "namespace": "llm-d", "inCluster": True, "kubeconfig": "/k"},
        ),
        "target.inCluster: cannot be combined with kubeconfig or context",
    ),
    (
        "cache-path-relative",
        put("modelService.cacheHostPath", "hf-cache"),
        "modelService.cacheHostPath: must be an absolute path",
    ),
    (
        "epp-config-wrong-kind",
        put("modelService.epp.pluginsConfig", "kind: ConfigMap\n"),
        "modelService.epp.pluginsConfig: must be an EndpointPickerConfig document",
    ),
    (
        "analysis-prometheus-not-http",
        put("strategy.decode", {"analysis": {"prometheus": {"url": "prom:9090"}}}),
        "strategy.decode.analysis.prometheus.url: must be an http(s) URL, got 'prom:9090'",
    ),
    (
        "analysis-quantile-out-of-range",
        put("strategy.decode", {"analysis": {"quantile": 1.5}}),
        "strategy.decode.analysis.quantile:",
    ),
    (
        "analysis-unknown-inconclusive-policy",
        put("strategy.prefill", {"analysis": {"onInconclusive": "ignore"}}),
        "strategy.prefill.analysis.onInconclusive:",
    ),
    (
        "analysis-judges-nothing",
        put("strategy.decode", {"analysis": {
            "requirePrefillDecode": False,
            "compare": {"ttft": None, "tpot": None, "e2e": None, "errorRateIncrease": None},
        }}),
        "strategy.decode.analysis: judges nothing",
    ),
    (
        "analysis-load-too-thin",
        put("strategy.decode", {"analysis": {
            "window": "10s", "minRequests": 50, "load": {"requestsPerSecond": 1},
        }}),
        "strategy.decode.analysis.load.requestsPerSecond: sends about 10 requests in the 10s",
    ),
    (
        "accelerator-no-values",
        put("modelService.accelerator", {"labelValues": []}),
        "modelService.accelerator.labelValues: list should have at least 1 item after validation",
    ),
]


def _write(tmp_path: Path, mutation: Mutation) -> Path:
    document = copy.deepcopy(BASE)
    mutation(document)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = starter.run(["--output", "text", "validate", "-f", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_there_are_at_least_thirty_invalid_specs() -> None:
    assert len(CASES) >= 30
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("mutation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_invalid_spec_is_refused_with_its_yaml_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutation: Mutation, expected: str
) -> None:
    code, out, err = _validate(_write(tmp_path, mutation), capsys)
    assert code == starter.ExitCode.REFUSED
    lines = [line.strip() for line in err.splitlines()]
    assert any(line.startswith(expected) for line in lines), err
    assert "Traceback" not in err + out


def test_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutation = both(
        put("modelService.decode.replicas", "two"),
        put("target.namespace", "Bad_NS"),
        put("modelService.prefill.gpus", 8),
    )
    code, _, err = _validate(_write(tmp_path, mutation), capsys)
    assert code == starter.ExitCode.REFUSED
    assert "3 problem(s)" in err
    for path in (
        "modelService.decode.replicas:",
        "target.namespace:",
        "modelService.prefill.gpus:",
    ):
        assert f"  {path}" in err


def test_cross_field_problems_are_reported_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutation = both(
        put("modelService.decode.gpusPerPod", 8),
        put("strategy.roleOrder", ["prefill", "prefill"]),
        put("verification.gateway", {"url": "ftp://x"}),
    )
    _, _, err = _validate(_write(tmp_path, mutation), capsys)
    assert "3 problem(s)" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("target: [unclosed\n", "invalid YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
        ("\tkind: Rollout\n", "invalid YAML at line 1"),
    ],
    ids=["unclosed-flow", "top-level-list", "empty-file", "tab-indent"],
)
def test_malformed_yaml_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(content)
    code, out, err = _validate(path, capsys)
    assert code == starter.ExitCode.REFUSED
    assert expected in err
    assert "Traceback" not in err + out


def test_missing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _validate(tmp_path / "nope.yaml", capsys)
    assert code == starter.ExitCode.REFUSED
    assert "nope.yaml: 1 problem(s):" in err and "no such file" in err


def test_json_output_lists_problems_with_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, put("modelService.decode.gpusPerPod", 8))
    code = starter.run(["--output", "json", "validate", "-f", str(path)])
    out = capsys.readouterr().out
    assert code == starter.ExitCode.REFUSED
    document = yaml.safe_load(out)
    assert document["valid"] is False
    assert {
        "path": "modelService.decode.gpusPerPod",
        "message": "must equal dataParallelLocal x tensorParallel (8 != 4 x 1)",
    } in document["problems"]


def test_console_script_prints_no_traceback_for_a_bad_spec(tmp_path: Path) -> None:
    path = _write(tmp_path, put("modelService.decode.replicas", "two"))
    result = subprocess.run(
        [sys.executable, str(REPO / "starter.py"), "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == starter.ExitCode.REFUSED
    assert "modelService.decode.replicas: input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
