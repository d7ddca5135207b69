"""Bad input never shows a traceback: one clear line on stderr, the right exit code, and off a TTY
the Error document on stdout. These need no Temporal and no cluster."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import starter
from starter import ExitCode

REPO = Path(__file__).resolve().parents[2]
DEMO_SPEC = REPO / "examples" / "demo.yaml"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = starter.run(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_apply_of_a_missing_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["apply", "-f", str(tmp_path / "nope.yaml")], capsys)

    assert code == ExitCode.REFUSED
    assert one_line(err) == f"llmd-rollout: {tmp_path / 'nope.yaml'}: no such file; give the " \
        "path of a rollout spec with -f"
    assert json.loads(out) == {
        "apiVersion": "llmd-rollout/v1",
        "kind": "Error",
        "exitCode": 5,
        "message": f"{tmp_path / 'nope.yaml'}: no such file; give the path of a rollout spec "
        "with -f",
    }


def test_apply_of_invalid_yaml_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("target: [unclosed\n")

    code, _, err = run(["--output", "text", "apply", "-f", str(spec)], capsys)

    assert code == ExitCode.REFUSED
    assert one_line(err).startswith(f"llmd-rollout: {spec}: invalid YAML at line 2, column 1")


def test_plan_of_an_invalid_spec_is_refused_before_touching_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "list.yaml"
    spec.write_text("- a\n- list\n")

    code, _, err = run(["plan", "-f", str(spec)], capsys)

    assert code == ExitCode.REFUSED
    assert "must be a YAML mapping" in one_line(err)


@pytest.mark.parametrize(
    "target", ["wide-ep", "a/b", "clustersim/llm-d-wide-ep/wide-ep/extra", "Upper/case/name"]
)
def test_a_malformed_target_is_a_usage_error(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["--output", "text", "status", target], capsys)

    assert code == ExitCode.USAGE
    assert one_line(err).startswith(f"llmd-rollout: {target!r} is not a target: write "
                                    "<cluster>/<namespace>/<name>")


def test_unreachable_temporal_is_one_line_naming_the_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{unused_port()}"

    code, out, err = run(
        ["status", "clustersim/llm-d-wide-ep/wide-ep", "--address", address], capsys
    )

    assert code == ExitCode.USAGE
    assert one_line(err) == (
        f"llmd-rollout: cannot reach Temporal at {address} (connection refused); start one "
        "(e.g. 'llmd-rollout demo') or point --address/TEMPORAL_ADDRESS at a running server"
    )
    assert json.loads(out)["kind"] == "Error"


def test_a_tls_certificate_without_its_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(["list", "--tls-cert", "client.pem"], capsys)

    assert code == ExitCode.USAGE
    assert "TEMPORAL_TLS_CLIENT_KEY_PATH" in one_line(err)


def test_an_unknown_verb_is_a_usage_error_not_an_approval_wait(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(["deploy", "-f", str(DEMO_SPEC)], capsys)

    assert code == ExitCode.USAGE
    assert "Run 'llmd-rollout --help'" in one_line(err)


def test_output_flags_work_after_the_verb(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["validate", "-f", str(DEMO_SPEC), "-o", "json", "--no-color"], capsys)

    assert code == ExitCode.SUCCESS
    assert json.loads(out)["kind"] == "ValidationResult"


def test_help_documents_every_exit_code() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "starter.py"), "apply", "--help"],
        capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0
    for line in (
        "0  success", "1  usage or connection error", "2  waiting for approval",
        "3  failed and rolled back", "4  failed without rollback",
        "5  refused (invalid spec or preflight)", "6  a rollout of this target is already running",
    ):
        assert line in result.stdout


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (
            [], {"TEMPORAL_ADDRESS": "not a host"},
            "TEMPORAL_ADDRESS='not a host' is not host:port (e.g. 127.0.0.1:7233 or "
            "temporal.example.com:7233)",
        ),
        (
            ["--address", "127.0.0.1:99999"], {},
            "--address='127.0.0.1:99999' has no valid port ('99999'; 1-65535 expected)",
        ),
        (
            ["--address", "temporal.example.com"], {},
            "--address='temporal.example.com' is not host:port (e.g. 127.0.0.1:7233 or "
            "temporal.example.com:7233)",
        ),
        (
            [], {"TEMPORAL_NAMESPACE": "my namespace"},
            "TEMPORAL_NAMESPACE='my namespace' must not contain spaces or control characters",
        ),
        (
            ["--task-queue", "queue\n"], {},
            "--task-queue='queue\\n' must not contain spaces or control characters",
        ),
    ],
    ids=["address-not-a-host", "port-out-of-range", "no-port", "namespace-space", "queue-newline"],
)
def test_connection_settings_that_do_not_parse_name_the_setting(
    argv: list[str], environment: dict[str, str], expected: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    code, out, err = run(["list", *argv], capsys)

    assert code == ExitCode.USAGE
    assert one_line(err) == f"llmd-rollout: invalid Temporal connection settings: {expected}"
    assert json.loads(out)["exitCode"] == ExitCode.USAGE


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [(["statsu", "a/b/c"], "did you mean 'status'?"),
     (["schedule", "delet", "a/b/c"], "did you mean 'delete'?")],
)
def test_a_mistyped_verb_names_the_closest_one(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(argv, capsys)

    assert code == ExitCode.USAGE
    assert f"; {suggestion} Run 'llmd-rollout --help' for usage." in one_line(err)


def test_a_verb_far_from_any_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["xyzzy"], capsys)

    assert code == ExitCode.USAGE
    assert "did you mean" not in one_line(err)


def test_yaml_output_is_the_json_document_as_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    json_code, as_json, _ = run(["validate", "-f", str(DEMO_SPEC), "-o", "json"], capsys)
    yaml_code, as_yaml, _ = run(["-o", "yaml", "validate", "-f", str(DEMO_SPEC)], capsys)

    assert json_code == yaml_code == ExitCode.SUCCESS
    assert not as_yaml.lstrip().startswith("{")
    assert yaml.safe_load(as_yaml) == json.loads(as_json)
    assert yaml.safe_load(as_yaml)["kind"] == "ValidationResult"
