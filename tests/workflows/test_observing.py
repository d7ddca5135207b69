"""The client's view: live heartbeat figures over the progress query, and results of failures."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from rollouts.observing import PendingActivity, overlay, result_of_failure
from spec.workflow_io import (
    Outcome,
    Phase,
    Progress,
    RoleProgress,
    RolloutResult,
    RunState,
)

NOW = datetime(2025, 7, 7, tzinfo=UTC)


def progress() -> Progress:
    return Progress(
        workflow_id="rollout/c/n/x", target="c/n/x", phase=Phase.MODEL_LOAD,
        step="model-load/decode", state=RunState.RUNNING, percent=50,
        roles=[RoleProgress(role="decode", image="i", groups=1, pods=2)], history=[],
    )


def test_model_load_heartbeat_fills_in_pods_serving_and_weight_loading() -> None:
    heartbeat = {
        "started_at": NOW.isoformat(), "role": "decode", "serving": 1, "expected": 2,
        "pods": [
            {"name": "decode-0", "phase": "serving", "weights_percent": 100.0},
            {"name": "decode-1", "phase": "loading", "weights_percent": 40.0},
        ],
    }
    live = overlay(progress(), [PendingActivity("wait_for_model_load", 1, heartbeat, None)])
    decode = live.roles[0]
    assert decode.pods_loaded == 1 and decode.pods_ready == 1
    assert decode.load_percent == 70.0
    assert live.diagnosis == "decode: 1/2 pods serving; loading weights: decode-1 40%"
    assert live.live is not None and live.live["wait_for_model_load"]["attempt"] == 1


def test_a_retrying_activity_becomes_the_diagnosis() -> None:
    pending = PendingActivity("helm_upgrade_install", 3, None, "another operation in progress")
    live = overlay(progress(), [pending])
    assert live.diagnosis == "helm_upgrade_install retrying: another operation in progress"


def test_the_result_of_a_failed_rollout_is_read_from_its_failure() -> None:
    result = RolloutResult(
        workflow_id="rollout/c/n/x", target="c/n/x", outcome=Outcome.ROLLED_BACK, phases=[],
        steps=[], started_at=NOW, finished_at=NOW, duration_seconds=0.0,
    )
    failure = WorkflowFailureError(
        cause=ApplicationError("CrashLoop", result.model_dump(mode="json"), type="CrashLoop")
    )
    assert result_of_failure(failure) == result
    assert result_of_failure(WorkflowFailureError(cause=ApplicationError("x"))) is None
