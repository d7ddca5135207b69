"""Payloads outlive the worker build that wrote them: every payload model family ignores the
fields a newer build added (workflows/README.md, "Worker upgrades"). A person's spec is the one
place unknown fields are refused (tests/spec/test_invalid_specs.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from spec.activity_io import IOModel
from spec.cluster_io import ClusterModel, EnsureAsk, SharedPiece
from spec.rollout import Target
from spec.workflow_io import IoModel


@pytest.mark.parametrize("family", [IoModel, IOModel, ClusterModel])
def test_every_payload_family_ignores_unknown_fields(family: type[BaseModel]) -> None:
    assert family.model_config.get("extra") == "ignore", family


def test_an_ask_from_a_newer_rollout_decodes_on_an_older_cluster_workflow() -> None:
    ask = EnsureAsk(
        ask_id="rollout/c/ns/r/run/dependencies",
        target_id="c/ns/r",
        target=Target(cluster="c", namespace="ns"),
        pieces=[
            SharedPiece(key="crds/gateway-api", kind="crds", step="crds/gateway-api", version="1")
        ],
        timeout=timedelta(minutes=2),
    )
    newer = {**ask.model_dump(mode="json"), "priority": "high"}
    newer["pieces"][0]["pinned"] = True

    assert EnsureAsk.model_validate(newer) == ask
