"""Rollout specs for the workflow tests: the demo spec under a test's own name, with changes.

Each test uses its own `metadata.name`, so its workflow ID (`rollout/<cluster>/<ns>/<name>`) is
its own on the session's shared Temporal server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from spec import RolloutSpec
from spec.fleet import FleetPlan, FleetTarget, FleetWave
from spec.loader import parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NEW_IMAGE = "ghcr.io/llm-d/llm-d-dev:v0.2.1"
BAD_IMAGE = "ghcr.io/llm-d/llm-d-dev:v9.9.9-broken"

Change = Callable[[dict[str, Any]], None]


def demo_spec(name: str, *changes: Change) -> RolloutSpec:
    document = yaml.safe_load((EXAMPLES / "demo.yaml").read_text(encoding="utf-8"))
    document["metadata"]["name"] = name
    for change in changes:
        change(document)
    return parse_spec(yaml.safe_dump(document), f"demo.yaml as {name}", base_dir=EXAMPLES)


def image(value: str) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["modelService"]["vllmImage"] = value

    return change


def decode_replicas(replicas: int) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["modelService"]["decode"]["replicas"] = replicas

    return change


def decode_steps(*steps: dict[str, Any]) -> Change:
    def change(document: dict[str, Any]) -> None:
        document.setdefault("strategy", {}).setdefault("decode", {})["steps"] = list(steps)

    return change


def between_roles(**gate: Any) -> Change:
    def change(document: dict[str, Any]) -> None:
        document.setdefault("strategy", {})["betweenRoles"] = gate

    return change


def first_install_failure(policy: str) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["rollback"]["onFirstInstallFailure"] = policy

    return change


def infra_values(**values: Any) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["infra"].setdefault("values", {}).update(values)

    return change


def on_cluster(cluster: str) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["target"]["cluster"] = cluster

    return change


def fleet_of(name: str, waves: list[list[tuple[str, RolloutSpec]]], **fields: Any) -> FleetPlan:
    """A FleetPlan of named target specs, wave after wave (`wave-1`, ...), one at a time."""
    return FleetPlan(
        name=name,
        waves=[
            FleetWave(name=f"wave-{i}", max_parallel=1,
                      targets=[FleetTarget(name=n, spec=s) for n, s in wave])
            for i, wave in enumerate(waves, start=1)
        ],
        **fields,
    )
