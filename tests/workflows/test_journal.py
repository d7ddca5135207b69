"""The step history: a journaled step closes with what it reported, or as failed or cancelled
when it raised (and the error goes on up); milestones come from the plan."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from spec.workflow_io import Phase, StepStatus
from tests.workflows.specs import NEW_IMAGE, decode_replicas, decode_steps, demo_spec, image
from workflows.journal import Journal, covered_seconds
from workflows.plan import plan_rollout
from workflows.progress import milestones

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_a_step_closes_with_what_its_body_reported() -> None:
    journal = Journal()
    with journal.step(Phase.INFRA, "infra", Clock()) as outcome:
        outcome.status, outcome.detail = StepStatus.CHANGED, "upgraded, revision 2"
    [record] = journal.records()
    assert (record.status, record.detail, record.duration_seconds) == (
        StepStatus.CHANGED, "upgraded, revision 2", 1.0,
    )


def test_a_body_that_says_nothing_passed() -> None:
    journal = Journal()
    with journal.step(Phase.VERIFY, "verify", Clock(), StepStatus.WAITING):
        assert journal.records()[0].status == StepStatus.WAITING
    assert journal.records()[0].status == StepStatus.PASSED


@pytest.mark.parametrize(
    ("error", "cancelled", "status"),
    [
        (RuntimeError("boom"), StepStatus.CANCELLED, StepStatus.FAILED),
        (asyncio.CancelledError(), StepStatus.CANCELLED, StepStatus.CANCELLED),
        (asyncio.CancelledError(), StepStatus.FAILED, StepStatus.FAILED),
    ],
    ids=["error", "cancelled", "cancelled-reads-failed"],
)
def test_a_step_that_raises_is_closed_and_the_error_goes_on(
    error: BaseException, cancelled: StepStatus, status: StepStatus
) -> None:
    journal = Journal()
    with (
        pytest.raises(type(error)),
        journal.step(Phase.MODEL_LOAD, "load", Clock(), cancelled=cancelled) as outcome,
    ):
        outcome.status = StepStatus.CHANGED
        raise error
    [record] = journal.records()
    assert record.status == status and record.finished_at is not None


def test_milestones_follow_the_plan() -> None:
    canary = decode_steps({"partition": 1, "approval": True})
    spec = demo_spec("milestones", decode_replicas(2), canary, image(NEW_IMAGE))
    assert milestones(spec, None) == (
        "preflight", "dependencies", "gateway-provider", "namespace", "infra",
        *spec.strategy.role_order, "verify", "record",
    )
    plan = plan_rollout(spec, "rev-1", demo_spec("milestones", decode_replicas(2), canary))
    planned = milestones(spec, plan)
    assert planned[5:-2] == tuple(step.name for step in plan.steps)
    assert "decode/partition-1" in planned and len(planned) == 7 + len(plan.steps)


def test_a_milestone_the_plan_does_not_hold_is_refused() -> None:
    from workflows.progress import RolloutProgress

    progress = RolloutProgress(demo_spec("milestones"))
    progress.reached("preflight")
    with pytest.raises(ValueError, match="not a milestone"):
        progress.reached("dependecies")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_phase_lasts_while_any_of_its_steps_runs_side_by_side_steps_counted_once() -> None:
    journal = Journal()
    # Two dependencies side by side (0-10 s and 2-6 s), then another phase, then the
    # dependencies phase again (20-23 s): 13 s, where adding the steps up said 17.
    crds = journal.start(Phase.DEPENDENCIES, "crds", at(0))
    lws = journal.start(Phase.DEPENDENCIES, "lws", at(2))
    journal.finish(lws, StepStatus.CHANGED, at(6))
    journal.finish(crds, StepStatus.UNCHANGED, at(10))
    journal.add(Phase.NAMESPACE, "namespace", StepStatus.UNCHANGED, at(12), "")
    again = journal.start(Phase.DEPENDENCIES, "gateway-provider", at(20))
    journal.finish(again, StepStatus.UNCHANGED, at(23))

    durations = {p.phase: p.duration_seconds for p in journal.phases()}

    assert durations == {Phase.DEPENDENCIES: 13.0, Phase.NAMESPACE: 0.0}


def test_covered_seconds_of_nested_touching_and_no_intervals() -> None:
    assert covered_seconds([]) == 0.0
    assert covered_seconds([(at(0), at(10)), (at(1), at(2))]) == 10.0
    assert covered_seconds([(at(5), at(6)), (at(0), at(5))]) == 6.0


def test_a_step_done_elsewhere_keeps_the_time_it_ran_within_its_own() -> None:
    """A shared piece's step spans the rollout's whole ask; the cluster workflow says when the
    piece itself ran. That time is kept, never outside the step's own start and end (the two
    workflows' clocks are the server's, but an answer must not move a step out of its ask)."""
    s = timedelta(seconds=1)
    journal = Journal()
    inside, early, late, unsaid = (journal.start(Phase.DEPENDENCIES, name, T0) for name in "abcd")
    journal.finish(inside, StepStatus.CHANGED, T0 + 10 * s, ran=(T0 + 2 * s, T0 + 5 * s))
    journal.finish(early, StepStatus.CHANGED, T0 + 10 * s, ran=(T0 - 3 * s, T0 + 1 * s))
    journal.finish(late, StepStatus.CHANGED, T0 + 10 * s, ran=(T0 + 12 * s, T0 + 14 * s))
    journal.finish(unsaid, StepStatus.UNCHANGED, T0 + 10 * s)
    spans = [(r.started_at - T0, r.finished_at - T0) for r in journal.records()
             if r.finished_at is not None]
    assert spans == [(2 * s, 5 * s), (0 * s, 1 * s), (10 * s, 10 * s), (0 * s, 10 * s)]
