"""The Fleet document: expanded into one validated RolloutSpec per target, or refused with every
problem at once, each naming its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from spec.fleet import is_fleet_document, load_fleet
from spec.loader import SpecError, resolve_local_paths

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def rollout() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    resolve_local_paths(document, EXAMPLES)
    del document["target"]
    return document


def fleet(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "llmd-rollout.llm-d.ai/v1alpha1",
        "kind": "Fleet",
        "metadata": {"name": "wide-ep-fleet"},
        "rolloutFile": "rollout.yaml",
        "targets": [
            {"name": "a", "cluster": "east", "namespace": "llm-d", "kubeconfig": "east.yaml",
             "context": "admin"},
            {"name": "b", "cluster": "west", "namespace": "llm-d",
             "overrides": {"modelService": {"decode": {"replicas": 2}}}},
        ],
        "waves": [{"name": "canary", "targets": ["a"]},
                  {"name": "rest", "targets": ["b"], "maxParallel": 2}],
        "betweenWaves": {"pause": "10m", "approval": True},
        "onFailure": "rollbackAll",
    }
    document.update(changes)
    return document


def write(folder: Path, document: dict[str, Any]) -> Path:
    (folder / "rollout.yaml").write_text(yaml.safe_dump(rollout()))
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def problems(folder: Path, document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as refused:
        load_fleet(write(folder, document))
    return [str(p) for p in refused.value.problems]


def test_each_target_gets_the_rollout_on_its_own_cluster_with_its_overrides(
    tmp_path: Path,
) -> None:
    plan = load_fleet(write(tmp_path, fleet()))

    assert plan.name == "wide-ep-fleet" and plan.on_failure == "rollbackAll"
    assert [w.name for w in plan.waves] == ["canary", "rest"]
    assert plan.waves[1].max_parallel == 2
    a, b = plan.waves[0].targets[0].spec, plan.waves[1].targets[0].spec
    assert a.target_id == "east/llm-d/wide-ep" and b.target_id == "west/llm-d/wide-ep"
    assert a.target.kubeconfig == str(tmp_path / "east.yaml") and a.target.context == "admin"
    assert a.model_service.decode.replicas == 1 and b.model_service.decode.replicas == 2
    assert plan.between_waves.approval
    assert is_fleet_document(tmp_path / "fleet.yaml")
    assert not is_fleet_document(tmp_path / "rollout.yaml")


def test_waves_must_place_every_target_once_and_name_only_known_ones(tmp_path: Path) -> None:
    found = problems(tmp_path, fleet(waves=[
        {"name": "canary", "targets": ["a", "zz"]},
        {"name": "canary", "targets": ["a"]},
    ]))

    assert found == [
        "waves[0].targets: no target named zz",
        "waves[1].name: wave canary appears twice",
        "waves[1].targets: a is already in wave canary",
        "waves: target b is in no wave",
    ]


def test_a_bad_override_is_refused_naming_the_target_and_field(tmp_path: Path) -> None:
    targets = fleet()["targets"]
    targets[1]["overrides"] = {"modelService": {"decode": {"replicas": "two"}}}

    found = problems(tmp_path, fleet(targets=targets))

    assert len(found) == 1
    assert found[0].startswith("targets[1] (b): modelService.decode.replicas:")


def test_two_entries_for_one_target_and_unknown_fields_are_refused(tmp_path: Path) -> None:
    targets = fleet()["targets"]
    targets[1]["cluster"] = "east"
    assert problems(tmp_path, fleet(targets=targets)) == [
        "targets: b and a are the same target east/llm-d/wide-ep"
    ]
    assert problems(tmp_path, fleet(onFailur="rollbackAll")) == ["onFailur: unknown field"]
    assert problems(tmp_path, fleet(rollout=rollout())) == [
        "rollout: give exactly one of rollout or rolloutFile"
    ]


def test_the_example_fleet_loads() -> None:
    plan = load_fleet(EXAMPLES / "fleet.yaml")

    assert [[t.spec.target_id for t in w.targets] for w in plan.waves] == [
        ["h200-east/llm-d-wide-ep/wide-ep"],
        ["h200-west/llm-d-wide-ep/wide-ep", "h200-central/llm-d-wide-ep/wide-ep"],
    ]
    assert plan.waves[1].targets[1].spec.model_service.decode.replicas == 2
    assert plan.waves[0].targets[0].spec.target.context == "h200-east"
