"""The exit-code mapping and the views, from the workflow's own payloads (no servers needed)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console
from temporalio.client import WorkflowExecutionStatus

from cli import exit_codes
from cli.exit_codes import ExitCode
from cli.follow import Snapshot
from cli.live import LineDisplay, progress_line
from cli.views import failure_headline, snapshot_view
from spec.reasons import FailureReason
from spec.workflow_io import (
    FailureReport,
    GateStatus,
    Outcome,
    Phase,
    Progress,
    RoleProgress,
    RolloutResult,
    RunState,
    StepRecord,
    StepStatus,
)

TARGET = "clustersim/llm-d-wide-ep/wide-ep"
STARTED = datetime(2025, 7, 14, 9, 30, tzinfo=UTC)
OLD_IMAGE = "ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1"
NEW_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.0"
OLD_REVISION = "b84b22cf1fb5"
NEW_REVISION = "f3a3875b92de"


def step(
    name: str, phase: Phase, status: StepStatus, seconds: float | None, detail: str = ""
) -> StepRecord:
    return StepRecord(
        name=name, phase=phase, status=status, started_at=STARTED,
        finished_at=None if seconds is None else STARTED + timedelta(seconds=seconds),
        duration_seconds=seconds, detail=detail,
    )


def loading_progress(**changes: object) -> Progress:
    progress = Progress(
        workflow_id=f"rollout/{TARGET}",
        target=TARGET,
        phase=Phase.MODEL_LOAD,
        step="model-load/decode",
        state=RunState.RUNNING,
        percent=56,
        roles=[
            RoleProgress(role="decode", image="ghcr.io/llm-d/llm-d:v0.2.0", groups=1, pods=2,
                         pods_ready=2, pods_loaded=0, load_percent=45.0, revision=NEW_REVISION,
                         partition=0, updating=True),
            RoleProgress(role="prefill", image="ghcr.io/llm-d/llm-d:v0.2.0", groups=1, pods=1),
        ],
        diagnosis="decode: 0/2 pods serving; loading weights",
        history=[
            step("preflight", Phase.PREFLIGHT, StepStatus.PASSED, 0.2,
                 "16 GPUs asked, 16 available"),
            step("infra", Phase.INFRA, StepStatus.UNCHANGED, 0.1),
            step("model-load/decode", Phase.MODEL_LOAD, StepStatus.RUNNING, None),
        ],
        live={
            "wait_for_model_load": {
                "attempt": 1,
                "lastFailure": None,
                "heartbeat": {
                    "started_at": STARTED.isoformat(),
                    "role": "decode",
                    "pods": [
                        {"name": "ms-wide-ep-llm-d-modelservice-decode-0", "node": "h200-node-1",
                         "phase": "loading", "weights_percent": 40.0},
                        {"name": "ms-wide-ep-llm-d-modelservice-decode-0-1",
                         "node": "h200-node-1", "phase": "loading", "weights_percent": 50.0},
                    ],
                    "serving": 0,
                    "expected": 2,
                },
            }
        },
    )
    return progress.model_copy(update=changes)


def snapshot(progress: Progress | None = None, result: RolloutResult | None = None) -> Snapshot:
    return Snapshot(
        target=TARGET,
        workflow_id=f"rollout/{TARGET}",
        run_id="run-1",
        workflow_type="RolloutWorkflow",
        status=WorkflowExecutionStatus.RUNNING if result is None
        else WorkflowExecutionStatus.COMPLETED,
        progress=progress,
        result=result,
    )


def result(
    outcome: Outcome,
    failed_in: Phase | None = None,
    why: FailureReason = FailureReason.INSUFFICIENT_CAPACITY,
) -> RolloutResult:
    failure = None if failed_in is None else FailureReport(
        reason=why, phase=failed_in, step="preflight",
        message="the cluster cannot hold the rollout",
    )
    return RolloutResult(
        workflow_id=f"rollout/{TARGET}", target=TARGET, outcome=outcome, phases=[], steps=[],
        failure=failure, started_at=STARTED, finished_at=STARTED, duration_seconds=0.0,
    )


def rendered(view_of: Snapshot, width: int = 120) -> str:
    screen = io.StringIO()
    Console(file=screen, width=width, no_color=True).print(
        snapshot_view(view_of, now=STARTED + timedelta(seconds=5))
    )
    return screen.getvalue()


@pytest.mark.parametrize(
    ("outcome", "failed_in", "code"),
    [
        (Outcome.SUCCEEDED, None, ExitCode.SUCCESS),
        (Outcome.REMOVED, None, ExitCode.SUCCESS),
        (Outcome.ROLLED_BACK, Phase.MODEL_LOAD, ExitCode.ROLLED_BACK),
        (Outcome.FAILED, Phase.PREFLIGHT, ExitCode.REFUSED),
        (Outcome.FAILED, Phase.VERIFY, ExitCode.FAILED),
        (Outcome.KEPT_FOR_INSPECTION, Phase.MODEL_LOAD, ExitCode.FAILED),
        (Outcome.ROLLBACK_FAILED, Phase.INFRA, ExitCode.FAILED),
    ],
)
def test_each_outcome_maps_to_its_documented_exit_code(
    outcome: Outcome, failed_in: Phase | None, code: ExitCode
) -> None:
    assert exit_codes.for_result(result(outcome, failed_in)) == code


@pytest.mark.parametrize(
    ("outcome", "failed_in", "code"),
    [
        (Outcome.FAILED, Phase.DEPENDENCIES, ExitCode.PERMISSION_DENIED),
        (Outcome.FAILED, Phase.PREFLIGHT, ExitCode.PERMISSION_DENIED),
        (Outcome.KEPT_FOR_INSPECTION, Phase.MODEL_SERVICE, ExitCode.PERMISSION_DENIED),
        # The previous version serves again: that is what a script must learn first.
        (Outcome.ROLLED_BACK, Phase.MODEL_SERVICE, ExitCode.ROLLED_BACK),
    ],
)
def test_a_missing_permission_has_its_own_exit_code_unless_rolled_back(
    outcome: Outcome, failed_in: Phase, code: ExitCode
) -> None:
    denied = result(outcome, failed_in, FailureReason.PERMISSION_DENIED)
    assert exit_codes.for_result(denied) == code


def test_an_approval_wait_stops_a_watcher_with_code_2_and_plain_running_does_not() -> None:
    waiting = loading_progress(
        state=RunState.WAITING_FOR_APPROVAL,
        gate=GateStatus(name="between-roles", approval=True, since=STARTED),
    )

    assert snapshot(waiting).exit_code == ExitCode.WAITING_FOR_APPROVAL
    assert snapshot(loading_progress()).exit_code is None


def test_live_view_shows_phases_pods_weight_loading_and_diagnosis() -> None:
    text = rendered(snapshot(loading_progress()))

    for phase in ("preflight", "dependencies", "model-load", "verify", "record"):
        assert phase in text
    assert "56%" in text
    assert "16 GPUs asked, 16 available" in text
    decode = next(line for line in text.splitlines() if line.startswith("decode"))
    assert decode.split()[:8] == [
        "decode", NEW_REVISION, "new", NEW_IMAGE, "0/1", "2", "2", "0"
    ]
    assert "45%" in decode and decode.rstrip().endswith("updating")
    assert "ms-wide-ep-llm-d-modelservice-decode-0-1" in text and "50%" in text
    assert "diagnosis: decode: 0/2 pods serving" in text


def test_approval_gate_tells_the_person_what_to_run() -> None:
    waiting = loading_progress(
        state=RunState.WAITING_FOR_APPROVAL,
        gate=GateStatus(name="between-roles", approval=True, since=STARTED),
    )

    text = rendered(snapshot(waiting))

    assert f"waiting for approval at gate between-roles: llmd-rollout approve {TARGET}" in text


def test_narrow_terminal_cuts_details_instead_of_wrapping() -> None:
    text = rendered(snapshot(loading_progress()), width=70)

    preflight = [line for line in text.splitlines() if "preflight" in line]
    assert len(preflight) == 1 and preflight[0].rstrip().endswith("…")


def test_refused_rollout_shows_the_reason_and_outcome() -> None:
    text = rendered(snapshot(result=result(Outcome.FAILED, Phase.PREFLIGHT)))

    assert "failed: InsufficientCapacity in preflight at preflight" in text
    assert "the cluster cannot hold the rollout" in text


def test_progress_lines_are_written_only_when_something_new_happens() -> None:
    lines: list[str] = []
    display = LineDisplay(lines.append)
    infra = {"phase": Phase.INFRA, "step": "gateway-programmed", "percent": 44}

    for _ in range(3):
        display.update(snapshot(loading_progress()))
    for detail in ("waiting for the first list", "Programmed=False") * 2:
        display.update(snapshot(loading_progress(**infra, diagnosis=detail)))

    assert lines == [
        "[step] preflight  preflight  passed  0.20s  (16 GPUs asked, 16 available)",
        "[step] infra  infra  unchanged  0.10s",
        "[ 56%] model-load  model-load/decode  running  decode 2/2 ready, 0/2 loaded, "
        "weights 45%",
        "[ 44%] infra  gateway-programmed  running  (waiting for the first list)",
        "[ 44%] infra  gateway-programmed  running  (Programmed=False)",
    ]
    assert progress_line(snapshot(result=result(Outcome.SUCCEEDED))) == (
        f"[done] {TARGET}  succeeded"
    )


def test_every_finished_step_is_told_once_even_when_no_snapshot_saw_it_run() -> None:
    """Snapshots come every half second; the journal tells what ran between two of them."""
    lines: list[str] = []
    display = LineDisplay(lines.append)
    preflight = step("preflight", Phase.PREFLIGHT, StepStatus.PASSED, 0.2)
    crds = step("crds/gateway-api", Phase.DEPENDENCIES, StepStatus.CHANGED, 0.13, "2 applied")
    failed = step("infra", Phase.INFRA, StepStatus.FAILED, 0.4, "503")
    retried = failed.model_copy(
        update={
            "status": StepStatus.RUNNING, "detail": "", "started_at": STARTED + timedelta(seconds=5)
        }
    )
    running = {"phase": Phase.INFRA, "step": "infra", "percent": 30}

    display.update(snapshot(loading_progress(**running, history=[preflight])))
    display.update(snapshot(loading_progress(**running, history=[preflight, crds, failed])))
    display.update(
        snapshot(loading_progress(**running, history=[preflight, crds, failed, retried]))
    )
    passed = retried.model_copy(update={"status": StepStatus.PASSED})
    display.update(
        snapshot(loading_progress(**running, history=[preflight, crds, failed, passed]))
    )

    told = [line for line in lines if line.startswith("[step]")]
    assert told == [
        "[step] preflight  preflight  passed  0.20s",
        "[step] dependencies  crds/gateway-api  changed  0.13s  (2 applied)",
        "[step] infra  infra  failed  0.40s  (503)",
        "[step] infra  infra  passed  0.40s",
    ]


@pytest.mark.parametrize(
    ("reason", "phase", "step", "headline"),
    [
        ("Aborted", "gate", "between-roles", "aborted at gate between-roles"),
        ("Aborted", "gate", "paused", "aborted while paused"),
        ("ImagePull", "model-load", "model-load/decode",
         "failed: ImagePull in model-load at model-load/decode"),
    ],
)
def test_a_failure_says_where_in_words(reason: str, phase: str, step: str, headline: str) -> None:
    assert failure_headline(reason, phase, step) == headline


def upgrade_roles(decode_loaded: int) -> list[RoleProgress]:
    """Decode first: decode's step has begun, prefill's has not."""
    revisions = {
        "revision": NEW_REVISION, "stable_revision": OLD_REVISION, "stable_image": OLD_IMAGE,
    }
    return [
        RoleProgress(role="decode", image=NEW_IMAGE, groups=1, pods=2, partition=0,
                     updating=True, groups_updated=1 if decode_loaded == 2 else 0,
                     pods_ready=2, pods_loaded=decode_loaded, load_percent=100.0, **revisions),
        RoleProgress(role="prefill", image=NEW_IMAGE, groups=1, pods=1, **revisions),
    ]


def rows_of(text: str, role: str) -> list[list[str]]:
    """The role's rows of the roles table (its first row names it, the next ones do not)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(role + " "))
    rows = [lines[start].split()]
    for line in lines[start + 1:]:
        if not line.startswith(" ") or not line.strip():
            break
        rows.append([role, *line.split()])
    return rows


def test_a_role_not_yet_updated_shows_its_stable_revision_serving() -> None:
    waiting = loading_progress(
        state=RunState.WAITING_FOR_APPROVAL, roles=upgrade_roles(decode_loaded=2), live={},
        gate=GateStatus(name="between-roles", approval=True, since=STARTED),
    )

    text = rendered(snapshot(waiting), width=160)

    prefill = rows_of(text, "prefill")
    assert prefill[0][:6] == ["prefill", OLD_REVISION, "stable", OLD_IMAGE, "1", "1"]
    assert prefill[0][-1] == "serving"
    assert prefill[1][:6] == ["prefill", NEW_REVISION, "new", NEW_IMAGE, "0/1", "1"]
    assert prefill[1][-1] == "pending"
    decode = rows_of(text, "decode")
    assert [row[2] for row in decode] == ["new"]
    assert "stable: last known good, verified serving when recorded" in text
    assert decode[0][4:8] == ["1/1", "2", "2", "2"] and decode[0][-1] == "serving"


def test_a_rollback_shows_the_revision_it_restores() -> None:
    rolling_back = loading_progress(
        state=RunState.ROLLING_BACK, roles=upgrade_roles(decode_loaded=0), live={},
    )

    text = rendered(snapshot(rolling_back), width=160)

    assert (
        f"rolling back: restoring revision {OLD_REVISION} (decode {OLD_IMAGE}, prefill "
        f"{OLD_IMAGE})" in text
    )
    decode = rows_of(text, "decode")
    assert decode[0][:3] == ["decode", OLD_REVISION, "stable"] and decode[0][-1] == "restoring"
    assert " ".join(decode[1][-2:]) == "rolling back"
    # Prefill never left its stable revision: it serves on; its update will not happen.
    prefill = rows_of(text, "prefill")
    assert prefill[0][-1] == "serving"
    assert prefill[1][-1] == "cancelled"


def test_each_loading_pod_names_the_revision_it_runs() -> None:
    progress = loading_progress()
    heartbeat = progress.live["wait_for_model_load"]["heartbeat"]  # type: ignore[index]
    heartbeat["revision_hash"] = "5d9c8b7a"
    heartbeat["pods"][0].update(revision_hash="5d9c8b7a", image=NEW_IMAGE)
    heartbeat["pods"][1].update(revision_hash="0aa1bb2c", image=OLD_IMAGE)

    text = rendered(snapshot(progress), width=160)

    lines = text.splitlines()
    assert f"new {NEW_IMAGE}" in next(line for line in lines if line.startswith(
        "ms-wide-ep-llm-d-modelservice-decode-0 "))
    assert f"old {OLD_IMAGE}" in next(line for line in lines if line.startswith(
        "ms-wide-ep-llm-d-modelservice-decode-0-1"))
