"""The activity contract survives Temporal's pydantic data converter unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from spec import load_spec
from spec.activity_io import (
    ApplyModelServiceInput,
    FailureEvidence,
    LastKnownGood,
    ModelLoadProgress,
    PodLoadState,
)
from spec.loader import SpecError, validate_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_inputs_carry_the_spec_through_the_data_converter() -> None:
    spec = load_spec(EXAMPLES / "demo.yaml")
    original = ApplyModelServiceInput(spec=spec, part="decode", partition=1, max_surge=0)
    payloads = await pydantic_data_converter.encode([original])
    (decoded,) = await pydantic_data_converter.decode(payloads, [ApplyModelServiceInput])
    assert decoded == original


def test_progress_summary_reads_well() -> None:
    progress = ModelLoadProgress(
        started_at=datetime(2025, 7, 26, tzinfo=UTC),
        role="decode",
        pods=[
            PodLoadState(name="decode-0", phase="loading", weights_percent=45.0),
            PodLoadState(name="decode-0-1", phase="serving", weights_percent=100.0),
        ],
        serving=1,
        expected=2,
    )
    assert progress.summary() == "decode: 1/2 pods serving; loading weights: decode-0 45%"


def test_failure_evidence_reads_back_from_error_details() -> None:
    evidence = FailureEvidence(reason="CrashLoop", message="m", log_lines=["a"])
    assert FailureEvidence.from_details([evidence.to_details()]) == evidence
    assert FailureEvidence.from_details(["unrelated"]) is None


async def test_an_older_worker_decodes_a_last_known_good_a_newer_worker_wrote() -> None:
    """A rollout can span a worker release: fields a newer build added are ignored, at every
    depth, instead of failing the decode (the spec inside included)."""
    spec = load_spec(EXAMPLES / "demo.yaml")
    record = LastKnownGood(rollout="demo", revision="3", action="found", spec=spec)
    newer = record.model_dump(mode="json", by_alias=True)
    newer["addedByANewerWorker"] = {"anything": 1}
    assert newer["spec"] is not None
    newer["spec"]["modelService"]["decode"]["aNewRoleSetting"] = True
    payloads = await pydantic_data_converter.encode([newer])

    (decoded,) = await pydantic_data_converter.decode(payloads, [LastKnownGood])

    assert decoded == record


def test_a_persons_spec_still_refuses_an_unknown_field_by_name() -> None:
    document = load_spec(EXAMPLES / "demo.yaml").model_dump(mode="json", by_alias=True)
    document["modelService"]["decode"]["replcas"] = 2

    with pytest.raises(SpecError) as refused:
        validate_document(document)

    assert "modelService.decode.replcas: unknown field" in str(refused.value)
