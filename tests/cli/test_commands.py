"""Every verb against a real Temporal dev server, the simulated two-node H200 cluster and a worker.

One environment serves the module and the tests run in file order, as a person would use the
CLI: a refused rollout, the install, an upgrade held at an approval gate, plan, a failed upgrade
rolled back, history, list, schedules, an abort, a rollback (watched on a pseudo-terminal),
teardown. Each exit code comes from a
real situation; outputs are compared with golden files (tests/cli/golden/) after normalising
run IDs, times, durations, addresses and hashes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.exit_codes import ExitCode
from embedded.demo import DemoEnvironment
from spec.cluster_io import (
    FreeAsk,
    Reservation,
    ReservationsView,
    ReserveAnswer,
    ReserveAsk,
    cluster_workflow_id,
)
from spec.workflow_io import WEEKDAYS
from tests.cli.conftest import EXAMPLES, CliRun, spec_variant
from tests.cli.golden import assert_golden_json, assert_golden_text
from tests.cli.terminal import run_on_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGET = "clustersim/llm-d-wide-ep/wide-ep"
DEMO_SPEC = str(EXAMPLES / "demo.yaml")
NEW_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.0"
BROKEN_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.0-broken"
ABORTED_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.1"
INSTALL_IMAGE = "ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1"

Runner = Callable[..., Any]


def upgrade(image: str, approval: bool) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["modelService"]["vllmImage"] = image
        if approval:
            document["strategy"]["betweenRoles"] = {"approval": True}

    return change


def screen_lines(out: str) -> list[str]:
    """A terminal's output as plain lines: escape sequences dropped, each line stripped."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).replace("\r", "\n")
    return [line.strip() for line in plain.splitlines() if line.strip()]


def one_line(run: CliRun) -> str:
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1, str(run)
    assert "Traceback" not in run.err
    return lines[0]


async def test_preflight_refuses_the_as_shipped_example_on_two_nodes(cli: Runner) -> None:
    run: CliRun = await cli(
        "apply", "-f", str(EXAMPLES / "wide-ep-lws-as-shipped.yaml"), "--wait"
    )

    assert run.code == ExitCode.REFUSED, str(run)
    document = run.json()
    failure = document["result"]["failure"]
    assert (failure["reason"], failure["phase"]) == ("InsufficientCapacity", "preflight")
    assert "24 GPUs" in failure["message"]
    assert document["result"]["outcome"] == "failed"
    assert_golden_json("refused.json", document)


async def test_apply_wait_installs_the_demo_and_exits_0(cli: Runner) -> None:
    run: CliRun = await cli("apply", "-f", DEMO_SPEC, "--wait")

    assert run.code == ExitCode.SUCCESS, str(run)
    document = run.json()
    assert document["result"]["outcome"] == "succeeded"
    assert [phase["phase"] for phase in document["result"]["phases"]] == [
        "preflight", "dependencies", "gateway-provider", "namespace", "infra", "model-service",
        "model-load", "verify", "record",
    ]
    assert_golden_json("install.json", document)


async def test_status_shows_the_finished_install_to_people_and_scripts(cli: Runner) -> None:
    text: CliRun = await cli("status", TARGET, "-o", "text")
    data: CliRun = await cli("status", TARGET)

    assert (text.code, data.code) == (ExitCode.SUCCESS, ExitCode.SUCCESS)
    assert_golden_text("status-installed.txt", text.out)
    assert data.json()["executionStatus"] == "COMPLETED"
    assert data.json()["exitCode"] == 0


def wait_for_capacity(
    namespace: str | None = None, decode_replicas: int = 1
) -> Callable[[dict[str, Any]], None]:
    """The demo spec with `budgets.capacityWait: 5m`, in another namespace or with more decode
    groups (each 8 GPUs more)."""
    def change(document: dict[str, Any]) -> None:
        document["budgets"]["capacityWait"] = "5m"
        if namespace is not None:
            document["target"]["namespace"] = namespace
        document["modelService"]["decode"]["replicas"] = decode_replicas

    return change


def beside_the_install(document: dict[str, Any]) -> None:
    """The demo spec in another namespace, without budgets.capacityWait."""
    document["target"]["namespace"] = "llm-d-second"


@pytest.mark.parametrize(
    ("change", "code", "says", "fits_empty", "waits"),
    [
        # The install holds all 16 GPUs of the two nodes; a second stack beside it fits the
        # empty nodes, so its rollout would wait for them, not be refused at preflight.
        (
            wait_for_capacity(namespace="llm-d-second"), ExitCode.CHANGES,
            "the GPUs are not free now: the rollout would wait up to 5m for them "
            "(budgets.capacityWait) before being refused; pod ",
            True, 300,
        ),
        # The same second stack with no budgets.capacityWait: refused, and told that waiting
        # would have helped.
        (
            beside_the_install, ExitCode.REFUSED,
            "the GPUs are not free now and the rollout would be refused at preflight; the nodes "
            "could hold it with nothing else on them, so with budgets.capacityWait set it would "
            "wait for them instead; pod ",
            True, None,
        ),
        # 24 GPUs on two 8-GPU nodes: waiting for capacity could never help.
        (
            wait_for_capacity(decode_replicas=2), ExitCode.REFUSED,
            "the rollout would be refused at once, without waiting its budgets.capacityWait of "
            "5m: even with nothing else on them the nodes could not hold it; pod ",
            False, None,
        ),
    ],
    ids=[
        "busy-gpus-would-wait-exit-7", "busy-gpus-no-wait-exit-5-says-waiting-would-help",
        "too-large-even-when-empty-exit-5",
    ],
)
async def test_plan_with_capacity_wait_says_whether_the_rollout_would_wait_or_be_refused(
    cli: Runner, tmp_path: Path, change: Callable[[dict[str, Any]], None], code: ExitCode,
    says: str, fits_empty: bool, waits: int | None,
) -> None:
    spec = spec_variant(tmp_path, "capacity-wait.yaml", change)

    text: CliRun = await cli("plan", "-f", str(spec), "-o", "text")
    data: CliRun = await cli("plan", "-f", str(spec))

    assert (text.code, data.code) == (code, code), str(text)
    # A long sentence may wrap: compare with every run of whitespace one space.
    flat = " ".join(text.out.split())
    assert says in flat, text.out
    # Then the node-level reason, as a refusal gives it.
    assert re.search(r"; pod \S+ needs a node with \d+ free nvidia.com/gpu; largest free: ", flat)
    plan = data.json()
    assert (plan["fits"], plan["fitsEmptyNodes"], plan["wouldWaitSeconds"]) == (
        False, fits_empty, waits
    )


async def test_status_of_an_unknown_target_is_one_line_and_exit_1(cli: Runner) -> None:
    run: CliRun = await cli("status", "clustersim/nowhere/nothing")

    assert run.code == ExitCode.USAGE
    assert one_line(run) == (
        "llmd-rollout: no rollout of clustersim/nowhere/nothing is known to Temporal namespace "
        "'default'; check the target (<cluster>/<namespace>/<name>) with 'llmd-rollout list'"
    )
    assert run.json()["kind"] == "Error"


async def test_an_approval_gate_exits_2_and_refuses_a_second_rollout_with_6(
    cli: Runner, demo: DemoEnvironment, tmp_path: Path
) -> None:
    spec = spec_variant(tmp_path, "upgrade.yaml", upgrade(NEW_IMAGE, approval=True))
    before: CliRun = await cli("status", TARGET)
    install_revision = before.json()["result"]["revision"]

    started: CliRun = await cli("apply", "-f", str(spec))
    # The live view on a terminal, decode first, until the gate before prefill.
    watched = await run_on_terminal(demo, ["status", TARGET, "--watch"])
    waiting: CliRun = await cli("status", TARGET)
    second: CliRun = await cli("apply", "-f", str(spec))
    status: CliRun = await cli("status", TARGET)

    assert started.code == ExitCode.SUCCESS, str(started)
    assert watched.code == waiting.code == ExitCode.WAITING_FOR_APPROVAL, watched.out
    progress = waiting.json()["progress"]
    assert (progress["state"], progress["gate"]["name"]) == ("waiting-for-approval",
                                                              "between-roles")
    # Prefill has not moved: its old pod serves the install's revision and image.
    prefill = next(role for role in progress["roles"] if role["role"] == "prefill")
    assert (prefill["stableRevision"], prefill["stableImage"], prefill["updating"]) == (
        install_revision, INSTALL_IMAGE, False
    )
    # The last frame: the view as the watch stopped at the gate.
    stable_row = [line for line in screen_lines(watched.out) if line.startswith("prefill ")][-1]
    assert stable_row.split()[1:3] == [install_revision, "stable"], watched.out
    assert stable_row.endswith("serving"), stable_row
    assert_golden_json("approval-wait.json", waiting.json())
    assert second.code == ExitCode.ALREADY_RUNNING
    assert one_line(second).startswith(
        f"llmd-rollout: a rollout of {TARGET} is already running as workflow rollout/{TARGET} "
    )
    assert status.code == ExitCode.WAITING_FOR_APPROVAL

    approved: CliRun = await cli("approve", TARGET, "--note", "decode looks good")
    finished: CliRun = await cli("status", TARGET, "--watch")

    assert approved.code == ExitCode.SUCCESS, str(approved)
    assert_golden_json("approve.json", approved.json())
    assert finished.code == ExitCode.SUCCESS, str(finished)
    assert finished.json()["result"]["outcome"] == "succeeded"


async def test_a_mistyped_target_names_the_closest_known_one(cli: Runner) -> None:
    run: CliRun = await cli("status", TARGET[:-1])

    assert run.code == ExitCode.USAGE
    assert one_line(run) == (
        f"llmd-rollout: no rollout of {TARGET[:-1]} is known to Temporal namespace 'default'; "
        f"did you mean '{TARGET}'?"
    )


async def test_approve_without_a_waiting_gate_is_refused_by_the_workflow(cli: Runner) -> None:
    run: CliRun = await cli("approve", TARGET)

    assert run.code == ExitCode.USAGE
    assert one_line(run) == (
        f"llmd-rollout: cannot approve {TARGET}: its last rollout has already finished; see "
        f"'llmd-rollout status {TARGET}'"
    )


async def test_plan_shows_nothing_to_change_for_what_runs_and_the_diff_of_a_change(
    cli: Runner, tmp_path: Path
) -> None:
    running = spec_variant(tmp_path, "upgrade.yaml", upgrade(NEW_IMAGE, approval=True))

    same: CliRun = await cli("plan", "-f", str(running))
    back: CliRun = await cli("plan", "-f", DEMO_SPEC, "-o", "text")
    diffed: CliRun = await cli("plan", "-f", DEMO_SPEC, "--diff", "-o", "text")
    data: CliRun = await cli("plan", "-f", DEMO_SPEC)

    # Exit codes as `kubectl diff`: 0 nothing would change, 7 something would.
    assert same.code == ExitCode.SUCCESS, str(same)
    plan = same.json()
    assert plan["firstInstall"] is False and plan["changes"] is False
    assert {obj["action"] for obj in plan["objects"]} == {"unchanged"}
    assert {release["action"] for release in plan["helmReleases"]} == {"unchanged"}
    assert plan["fits"] is True and plan["diff"] == ""
    assert_golden_json("plan-unchanged.json", plan)
    assert (back.code, diffed.code, data.code) == (ExitCode.CHANGES,) * 3, str(back)
    # The plan leads with the one real change; the bookkeeping objects share one line.
    head = back.out.splitlines()[:4]
    assert head[1] == (
        f"  image {NEW_IMAGE} → ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1 in decode, prefill"
    ), back.out
    assert head[2] == (
        "  2 of 12 objects change, 10 only take the new revision annotation; 0 GPUs more"
    ), back.out
    assert "only the revision annotation changes: ServiceAccount/" in back.out
    assert "-          image:" not in back.out
    assert f"full diffs: llmd-rollout plan -f {DEMO_SPEC} --diff" in back.out
    assert f"-          image: {NEW_IMAGE}" in diffed.out
    assert "+          image: ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1" in diffed.out
    assert data.json()["summary"]["images"] == [{
        "from": NEW_IMAGE, "to": "ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1",
        "roles": ["decode", "prefill"],
    }]
    assert_golden_text("plan-back.txt", back.out)
    assert_golden_text("plan-diff.txt", diffed.out)


async def test_plan_counts_the_gpus_another_targets_rollout_holds(
    cli: Runner, demo: DemoEnvironment
) -> None:
    """Another target's rollout placed a pod on h200-node-1 at preflight and holds its 8 GPUs
    until it ends: the plan that fitted above no longer does, as preflight would judge it."""
    client = await Client.connect(
        demo.temporal_address, namespace=demo.namespace, data_converter=pydantic_data_converter
    )
    cluster = client.get_workflow_handle(cluster_workflow_id("clustersim", demo.task_queue))
    view = await cluster.query("reservations", "", result_type=ReservationsView)
    other = "clustersim/other-team/other"
    hold = Reservation(
        owner=f"rollout/{other}", run_id="run-1", target_id=other,
        nodes={"h200-node-1": {"nvidia.com/gpu": "8"}},
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
    )
    held = await cluster.execute_update(
        "reserve", ReserveAsk(reservation=hold, based_on=view.version), result_type=ReserveAnswer
    )
    assert held.accepted, held
    try:
        text: CliRun = await cli("plan", "-f", DEMO_SPEC, "-o", "text")
        data: CliRun = await cli("plan", "-f", DEMO_SPEC)
        blind: CliRun = await cli("plan", "-f", DEMO_SPEC, "--address", "127.0.0.1:1")
    finally:
        await cluster.execute_update(
            "free", FreeAsk(cluster="clustersim", owner=hold.owner, why="test done"),
            result_type=ReserveAnswer,
        )

    assert (text.code, data.code) == (ExitCode.REFUSED,) * 2, str(text)
    plan = data.json()
    assert plan["heldByOtherRollouts"] == {
        "read": True, "unread": None, "targets": [other], "gpus": "8",
    }
    assert plan["fits"] is False and plan["capacity"]["gpus_available"] == 8
    flat = " ".join(text.out.split())
    assert f"counted as taken: 8 GPUs held by running rollouts of {other}" in flat, text.out
    # Without Temporal the plan still reads the cluster, and says what it could not count.
    assert blind.code == ExitCode.CHANGES, str(blind)
    unread = blind.json()["heldByOtherRollouts"]
    assert unread["read"] is False and "127.0.0.1:1" in unread["unread"], unread


async def test_an_image_that_cannot_be_pulled_is_rolled_back_with_exit_3(
    cli: Runner, demo: DemoEnvironment, tmp_path: Path
) -> None:
    await asyncio.to_thread(
        demo.cluster.fault, "image-pull", "--image", BROKEN_IMAGE, "--count", "1000"
    )
    spec = spec_variant(tmp_path, "broken.yaml", upgrade(BROKEN_IMAGE, approval=False))

    run: CliRun = await cli("apply", "-f", str(spec), "--wait")

    assert run.code == ExitCode.ROLLED_BACK, str(run)
    result = run.json()["result"]
    assert result["outcome"] == "rolled-back"
    assert result["failure"]["reason"] == "ImagePull"
    assert result["rollback"]["verified"] is True
    assert result["rollback"]["restoredRevision"] == result["previousRevision"]


async def test_history_lists_versions_outcomes_and_reasons(cli: Runner) -> None:
    text: CliRun = await cli("history", TARGET, "-o", "text")
    data: CliRun = await cli("history", TARGET)

    assert text.code == data.code == ExitCode.SUCCESS
    items = data.json()["items"]
    assert [item["outcome"] for item in items] == ["rolled-back", "succeeded", "succeeded"]
    assert items[0]["failure"]["reason"] == "ImagePull"
    assert items[0]["rollback"] == {"restoredRevision": items[1]["revision"], "verified": True}
    assert items[1]["image"] == NEW_IMAGE
    assert_golden_text("history.txt", text.out)
    assert_golden_json("history.json", data.json())


async def test_list_shows_rollouts_with_their_outcome(cli: Runner) -> None:
    text: CliRun = await cli("list", "-o", "text")
    data: CliRun = await cli("list")

    assert text.code == data.code == ExitCode.SUCCESS
    targets = {item["target"] for item in data.json()["items"]}
    assert targets == {TARGET, "h200/llm-d-wide-ep/wide-ep"}
    assert_golden_text("list.txt", text.out)
    assert_golden_json("list.json", data.json())


async def test_schedule_lifecycle(cli: Runner) -> None:
    # A maintenance window that cannot be open now: the triggered upgrade skips, changing nothing.
    closed_day = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]
    created: CliRun = await cli(
        "schedule", "create", TARGET, "-f", DEMO_SPEC, "--every", "24h", "--paused",
        "--note", "nightly", "--window-days", closed_day, "--window-start", "02:00",
        "--window-duration", "4h",
    )
    again: CliRun = await cli("schedule", "create", TARGET, "-f", DEMO_SPEC, "--every", "1h")
    listed: CliRun = await cli("schedule", "list", "-o", "text")
    described: CliRun = await cli("schedule", "describe", TARGET)
    unpaused: CliRun = await cli("schedule", "unpause", TARGET)
    triggered: CliRun = await cli("schedule", "trigger", TARGET)
    fired = await until_fired(cli)
    paused: CliRun = await cli("schedule", "pause", TARGET, "--note", "freeze")
    deleted: CliRun = await cli("schedule", "delete", TARGET)
    missing: CliRun = await cli("schedule", "describe", TARGET)

    assert created.json() == {
        "apiVersion": "llmd-rollout/v1", "kind": "ScheduleResult", "target": TARGET,
        "scheduleId": f"upgrade/{TARGET}", "action": "created",
    }
    assert again.code == ExitCode.USAGE and "already has an upgrade schedule" in one_line(again)
    assert_golden_text("schedule-list.txt", listed.out)
    assert described.json()["paused"] is True and described.json()["note"] == "nightly"
    # Paused: no next run is shown; unpause keeps the note given at create.
    assert described.json()["nextRuns"] == []
    assert fired["note"] == "nightly" and fired["nextRuns"]
    assert (unpaused.code, triggered.code, paused.code, deleted.code) == (0, 0, 0, 0)
    assert fired["recentRuns"][0]["workflowId"].startswith(f"upgrade/{TARGET}")
    assert missing.code == ExitCode.USAGE
    assert one_line(missing).startswith(f"llmd-rollout: {TARGET} has no upgrade schedule")


async def test_a_scheduled_firing_with_nothing_to_change_shows_in_list_not_in_history(
    cli: Runner, tmp_path: Path
) -> None:
    # The last good rollout is the approval-gated upgrade to NEW_IMAGE: desire exactly it.
    running = spec_variant(tmp_path, "upgrade.yaml", upgrade(NEW_IMAGE, approval=True))
    before: CliRun = await cli("history", TARGET)
    await cli("schedule", "create", TARGET, "-f", str(running), "--every", "24h", "--paused")
    await cli("schedule", "trigger", TARGET)
    await until_fired(cli)
    listed = await until_listed(cli, "unchanged")
    text: CliRun = await cli("list", "--target", TARGET, "-o", "text")
    after: CliRun = await cli("history", TARGET)
    await cli("schedule", "delete", TARGET)

    firings = {item["outcome"]: item for item in listed if item["kind"] == "scheduled"}
    # The earlier firing (outside its maintenance window) is found by its target too.
    assert set(firings) == {"skipped", "unchanged"}
    firing = firings["unchanged"]
    assert (firing["target"], firing["scheduled"], firing["image"]) == (TARGET, True, NEW_IMAGE)
    assert re.search(rf"{TARGET}\s+scheduled\s+unchanged\s+{re.escape(NEW_IMAGE)}", text.out)
    assert len(after.json()["items"]) == len(before.json()["items"])


async def until_listed(cli: Runner, outcome: str) -> list[dict[str, Any]]:
    """`list --target TARGET` once a scheduled firing with `outcome` shows (bounded)."""
    for _ in range(60):
        listed: CliRun = await cli("list", "--target", TARGET)
        items: list[dict[str, Any]] = listed.json()["items"]
        if any(item["kind"] == "scheduled" and item["outcome"] == outcome for item in items):
            return items
        await asyncio.sleep(0.5)
    raise AssertionError(f"no scheduled firing with outcome {outcome} in 'list --target'")


async def until_fired(cli: Runner) -> dict[str, Any]:
    """The schedule's description once its triggered run shows (bounded)."""
    for _ in range(60):
        described: CliRun = await cli("schedule", "describe", TARGET)
        if described.json()["recentRuns"]:
            document: dict[str, Any] = described.json()
            return document
        await asyncio.sleep(0.5)
    raise AssertionError("the triggered upgrade never showed in the schedule's recent runs")


async def test_pause_resume_and_abort_of_a_waiting_rollout(
    cli: Runner, demo: DemoEnvironment, tmp_path: Path
) -> None:
    good: CliRun = await cli("status", TARGET)
    # The last rollout (the broken image) rolled back to the last known good revision.
    restored_revision = good.json()["result"]["rollback"]["restoredRevision"]
    spec = spec_variant(tmp_path, "aborted.yaml", upgrade(ABORTED_IMAGE, approval=True))
    started: CliRun = await cli("apply", "-f", str(spec))
    waiting: CliRun = await cli("status", TARGET, "--watch")

    paused: CliRun = await cli("pause", TARGET, "--reason", "lunch")
    paused_again: CliRun = await cli("pause", TARGET)
    resumed: CliRun = await cli("resume", TARGET)
    # The rollback on a terminal: the live view names the revision it restores.
    aborted = await run_on_terminal(
        demo, ["abort", TARGET, "--reason", "changed my mind", "--wait"]
    )
    final: CliRun = await cli("status", TARGET)

    assert started.json()["kind"] == "RolloutStarted", str(started)
    assert waiting.code == ExitCode.WAITING_FOR_APPROVAL, str(waiting)
    assert (paused.json()["action"], paused.code) == ("pause", ExitCode.SUCCESS), str(paused)
    assert paused_again.code == ExitCode.USAGE
    assert "already paused" in one_line(paused_again)
    assert (resumed.json()["action"], resumed.code) == ("resume", ExitCode.SUCCESS)
    assert aborted.code == ExitCode.ROLLED_BACK, aborted.out
    lines = screen_lines(aborted.out)
    assert any(
        line.startswith(f"rolling back: restoring revision {restored_revision} (decode "
                        f"{NEW_IMAGE}")
        for line in lines
    ), aborted.out
    assert any(line.startswith("aborted at gate between-roles") for line in lines), aborted.out
    failure = final.json()["result"]["failure"]
    assert failure["reason"] == "Aborted" and "changed my mind" in failure["message"]


async def test_rollback_returns_to_the_install_revision_with_the_live_view(
    cli: Runner, demo: DemoEnvironment
) -> None:
    before: CliRun = await cli("history", TARGET)
    install = before.json()["items"][-1]

    started: CliRun = await cli("rollback", TARGET)
    watched = await run_on_terminal(demo, ["status", TARGET, "--watch"])

    assert started.code == ExitCode.SUCCESS, str(started)
    assert started.json()["revision"] == install["revision"]
    assert watched.code == ExitCode.SUCCESS, watched.out
    for phase in ("preflight", "model-service", "model-load", "verify", "record", "succeeded"):
        assert phase in watched.out
    assert "Traceback" not in watched.out
    # rich hides the cursor while it redraws, and shows it again when the view stops.
    assert watched.out.count("\x1b[?25l") == watched.out.count("\x1b[?25h") >= 1


async def test_set_image_rolls_out_the_current_spec_with_one_roles_image(
    cli: Runner
) -> None:
    refused: CliRun = await cli("set-image", TARGET, "not an image!")
    changed: CliRun = await cli("set-image", TARGET, "--role", "decode", ABORTED_IMAGE, "--wait")
    plan: CliRun = await cli("plan", "-f", DEMO_SPEC)
    status: CliRun = await cli("status", TARGET, "-o", "yaml")

    assert refused.code == ExitCode.REFUSED
    assert one_line(refused).startswith(
        "llmd-rollout: modelService.vllmImage: 'not an image!' is not an image reference"
    )
    assert changed.code == ExitCode.SUCCESS, str(changed)
    # Only decode runs the new image: going back to the demo spec changes decode alone.
    assert plan.json()["summary"]["images"] == [
        {"from": ABORTED_IMAGE, "to": "ghcr.io/llm-d/llm-d-dev:v0.2.0-rc.1", "roles": ["decode"]}
    ]
    document = yaml.safe_load(status.out)
    assert (document["kind"], document["result"]["outcome"]) == ("RolloutStatus", "succeeded")


async def test_retry_runs_the_last_failed_spec_again_and_refuses_after_a_success(
    cli: Runner
) -> None:
    nothing: CliRun = await cli("retry", TARGET)
    failed: CliRun = await cli("set-image", TARGET, BROKEN_IMAGE, "--wait")
    retried: CliRun = await cli("retry", TARGET, "--wait")
    history: CliRun = await cli("history", TARGET, "--limit", "2")

    assert nothing.code == ExitCode.USAGE
    assert "is succeeded, not failed or aborted; nothing to retry" in one_line(nothing)
    assert failed.code == ExitCode.ROLLED_BACK, str(failed)
    assert retried.code == ExitCode.ROLLED_BACK, str(retried)
    [again, first] = history.json()["items"]
    assert again["image"] == first["image"] == BROKEN_IMAGE
    assert again["revision"] == first["revision"]
    assert "retry of run" in retried.err


async def test_teardown_removes_the_stack(cli: Runner) -> None:
    run: CliRun = await cli("teardown", TARGET, "--wait")

    assert run.code == ExitCode.SUCCESS, str(run)
    assert run.json()["result"]["outcome"] == "removed"
    assert_golden_json("teardown.json", run.json())
