"""The example specs load, and `validate` summarizes what each asks of the cluster."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import starter
from spec import RolloutSpec, load_spec
from spec.types import format_duration, parse_duration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _summary(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = starter.run(["--output", "json", "validate", "-f", str(EXAMPLES / name)])
    assert code == starter.ExitCode.SUCCESS, capsys.readouterr().err
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_wide_ep_example_asks_sixteen_gpus_in_three_pods(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = _summary("wide-ep-lws.yaml", capsys)
    assert summary["valid"] is True
    assert summary["gpus"] == 16
    assert summary["pods"] == 3
    roles = {r["role"]: r for r in summary["roles"]}  # type: ignore[attr-defined]
    assert roles["decode"]["data_parallel_size"] == 8
    assert roles["decode"]["gpus_per_pod"] == 4
    assert roles["prefill"]["gpus_per_pod"] == 8


def test_as_shipped_example_asks_twenty_four_gpus(capsys: pytest.CaptureFixture[str]) -> None:
    summary = _summary("wide-ep-lws-as-shipped.yaml", capsys)
    assert summary["gpus"] == 24
    assert summary["pods"] == 3


def test_text_summary_names_roles_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    code = starter.run(["--output", "text", "validate", "-f", str(EXAMPLES / "wide-ep-lws.yaml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "valid" in out and "h200/llm-d-wide-ep/wide-ep" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[-1] == "16" and total.split()[1] == "3"


def test_demo_example_is_valid() -> None:
    spec = load_spec(EXAMPLES / "demo.yaml")
    assert spec.gpus == 16
    assert spec.target.cluster == "clustersim"
    for release in spec.gateway_provider.releases:
        assert release.chart.path is not None and Path(release.chart.path).is_absolute()


def test_spec_round_trips_through_json_unchanged() -> None:
    spec = load_spec(EXAMPLES / "wide-ep-lws.yaml")
    again = RolloutSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert json.loads(spec.model_dump_json())["budgets"]["modelLoad"] == "30m"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("500ms", 0.5), ("PT2M", 120), (45, 45)],
)
def test_durations_parse_in_go_and_iso_forms(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_durations_format_as_written() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(milliseconds=250)) == "250ms"


def test_unknown_usage_exits_with_code_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert starter.run(["frobnicate"]) == starter.ExitCode.USAGE
    assert "Run 'llmd-rollout --help'" in capsys.readouterr().err
