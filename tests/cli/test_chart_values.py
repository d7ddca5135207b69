"""Chart values a chart refuses are refused by `validate` and `plan` before anything changes: each
local chart is rendered with helm template (v4 and v3) against its values.schema.json, and the
line names the spec path of the value. No cluster, no Temporal."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import helmcli as helm
import starter
from starter import ExitCode

REPO = Path(__file__).resolve().parents[2]
CHARTS = REPO / "charts"
DEMO = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())
HELMS = {name: Path(sys.executable).parent / name for name in ("helm", "helm3")}
TCP = "infra.values.gateway.destinationRule.trafficPolicy.connectionPool.tcp.maxConnections"
CLASS_PATTERN = r"'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'"

Mutation = Callable[[dict[str, Any]], None]


def releases(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        doc["dependencies"]["leaderWorkerSet"]["release"],
        *doc["gatewayProvider"]["releases"],
        doc["infra"],
    ]


def write_spec(tmp_path: Path, mutation: Mutation) -> Path:
    """examples/demo.yaml with absolute chart paths (it moves to tmp_path), then `mutation`."""
    doc = copy.deepcopy(DEMO)
    for release in releases(doc):
        release["chart"]["path"] = str(CHARTS / Path(release["chart"]["path"]).name)
    mutation(doc)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def set_max_connections(value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        rule = doc["infra"]["values"]["gateway"]["destinationRule"]
        rule["trafficPolicy"] = {"connectionPool": {"tcp": {"maxConnections": value}}}

    return mutate


def set_listener_port(port: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["infra"]["values"]["gateway"]["listeners"] = [
            {"name": "default", "port": port, "protocol": "HTTP"}
        ]

    return mutate


def set_provider_class(name: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["gatewayProvider"]["releases"][0]["values"] = {"gatewayClass": {"name": name}}

    return mutate


def set_lws_version(version: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["dependencies"]["leaderWorkerSet"]["release"]["values"] = {
            "controllerVersion": version
        }

    return mutate


@pytest.fixture(params=sorted(HELMS))
def helm_binary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = HELMS[request.param]
    if not binary.is_file():
        pytest.skip(f"{binary} is missing: run `.venv/bin/python scripts/install_tools.py`")
    monkeypatch.setenv(helm.HELM_ENV, str(binary))
    return binary


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = starter.run(["--output", "text", "validate", "-f", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, [line.strip() for line in captured.err.splitlines() if line.strip()], captured.out


# (case id, mutation, the exact line `validate` prints for it)
CASES: list[tuple[str, Mutation, str]] = [
    ("max-connections-word", set_max_connections("eight"), f"{TCP}: got string, want integer"),
    ("max-connections-negative", set_max_connections(-1), f"{TCP}: minimum: got -1, want 1"),
    ("max-connections-zero", set_max_connections(0), f"{TCP}: minimum: got 0, want 1"),
    (
        "listener-port-too-high",
        set_listener_port(70000),
        "infra.values.gateway.listeners[0].port: maximum: got 70,000, want 65,535",
    ),
    (
        "provider-class-name",
        set_provider_class("Bad_Name!"),
        "gatewayProvider.releases[0].values.gatewayClass.name: 'Bad_Name!' does not match "
        f"pattern {CLASS_PATTERN}",
    ),
    (
        "lws-version-number",
        set_lws_version(0.7),
        "dependencies.leaderWorkerSet.release.values.controllerVersion: got number, want string",
    ),
]


@pytest.mark.parametrize(("mutation", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_validate_refuses_a_value_the_chart_schema_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helm_binary: Path,
    mutation: Mutation, expected: str,
) -> None:
    path = write_spec(tmp_path, mutation)

    code, lines, _ = validate(path, capsys)

    assert code == ExitCode.REFUSED
    assert lines == [f"{path}: 1 problem(s):", expected]


def test_every_refused_value_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helm_binary: Path
) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        for mutation in (set_max_connections("eight"), set_listener_port(-1),
                         set_lws_version(0.7)):
            mutation(doc)

    code, lines, _ = validate(write_spec(tmp_path, mutate), capsys)

    assert code == ExitCode.REFUSED
    assert lines[0].endswith("3 problem(s):")
    assert sorted(lines[1:]) == [
        "dependencies.leaderWorkerSet.release.values.controllerVersion: got number, want string",
        "infra.values.gateway.destinationRule.trafficPolicy.connectionPool.tcp.maxConnections: "
        "got string, want integer",
        "infra.values.gateway.listeners[0].port: minimum: got -1, want 1",
    ]


def test_a_value_from_a_values_file_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helm_binary: Path
) -> None:
    values = tmp_path / "infra-values.yaml"
    values.write_text(yaml.safe_dump({"gateway": {"serviceType": "Headless"}}))

    def mutate(doc: dict[str, Any]) -> None:
        doc["infra"]["valuesFiles"] = [str(values)]

    code, lines, _ = validate(write_spec(tmp_path, mutate), capsys)

    assert code == ExitCode.REFUSED
    assert lines[1] == (
        "infra.valuesFiles[0]: gateway.serviceType: value must be one of 'ClusterIP', "
        "'NodePort', 'LoadBalancer'"
    )


def test_a_template_error_names_the_release_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helm_binary: Path
) -> None:
    chart = tmp_path / "needs-a-name"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: needs-a-name\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n'
        '  name: {{ required "gatewayClass.name is required" .Values.gatewayClass.name }}\n'
    )

    def mutate(doc: dict[str, Any]) -> None:
        doc["gatewayProvider"]["releases"][0]["chart"] = {"path": str(chart)}
        doc["gatewayProvider"]["releases"][0]["values"] = {"gatewayClass": {"other": 1}}

    code, lines, _ = validate(write_spec(tmp_path, mutate), capsys)

    assert code == ExitCode.REFUSED
    assert lines[1].startswith(
        "gatewayProvider.releases[0].values: the chart does not render with these values: "
    )
    assert lines[1].endswith("gatewayClass.name is required")


def test_plan_refuses_before_reading_the_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helm_binary: Path
) -> None:
    path = write_spec(tmp_path, set_max_connections("eight"))

    # No cluster at all: the kubeconfig does not exist, so only the chart check can answer.
    code = starter.run(["--output", "text", "plan", "-f", str(path),
                        "--kubeconfig", str(tmp_path / "no-kubeconfig")])
    err = capsys.readouterr().err

    assert code == ExitCode.REFUSED
    assert err.strip().splitlines() == [
        f"llmd-rollout: {path}: {TCP}: got string, want integer; the spec is refused"
    ]


def test_json_output_lists_the_values_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helm_binary: Path
) -> None:
    path = write_spec(tmp_path, set_max_connections(-1))

    code = starter.run(["--output", "json", "validate", "-f", str(path)])
    document = json.loads(capsys.readouterr().out)

    assert code == ExitCode.REFUSED
    assert document["problems"] == [{"path": TCP, "message": "minimum: got -1, want 1"}]


def test_the_demo_charts_render_with_the_demo_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], helm_binary: Path
) -> None:
    code = starter.run(
        ["--output", "json", "validate", "-f", str(write_spec(tmp_path, lambda doc: None))]
    )
    document = json.loads(capsys.readouterr().out)

    assert code == ExitCode.SUCCESS
    assert [(c["path"], c["outcome"]) for c in document["charts"]] == [
        ("dependencies.leaderWorkerSet.release", "rendered"),
        ("gatewayProvider.releases[0]", "rendered"),
        ("infra", "rendered"),
    ]


def test_remote_charts_are_reported_as_not_rendered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = starter.run(
        ["--output", "json", "validate", "-f", str(REPO / "examples" / "wide-ep-lws.yaml")]
    )
    document = json.loads(capsys.readouterr().out)

    assert code == ExitCode.SUCCESS
    assert {c["note"] for c in document["charts"]} == {"not rendered: remote chart"}
    assert len(document["charts"]) == 4


def test_without_helm_the_charts_are_not_rendered_and_the_spec_is_not_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(helm.HELM_ENV, str(tmp_path / "no-helm"))

    code = starter.run(
        ["--output", "json", "validate", "-f", str(write_spec(tmp_path, lambda doc: None))]
    )
    document = json.loads(capsys.readouterr().out)

    assert code == ExitCode.SUCCESS
    assert {c["outcome"] for c in document["charts"]} == {"not-rendered"}
    assert all("helm not found" in c["note"] for c in document["charts"])


def test_the_pinned_helm_beside_python_is_found_without_path_or_llmd_helm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not HELMS["helm"].is_file():
        pytest.skip(f"{HELMS['helm']} is missing: run `.venv/bin/python scripts/install_tools.py`")
    monkeypatch.delenv(helm.HELM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no helm on PATH

    assert helm.helm_binary() == str(HELMS["helm"])
    code = starter.run(
        ["--output", "json", "validate", "-f", str(write_spec(tmp_path, set_listener_port(0)))]
    )

    assert code == ExitCode.REFUSED
    assert json.loads(capsys.readouterr().out)["problems"] == [
        {"path": "infra.values.gateway.listeners[0].port", "message": "minimum: got 0, want 1"}
    ]
