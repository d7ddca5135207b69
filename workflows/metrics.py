"""Rollout metrics, recorded from workflow code through the SDK's replay-safe metric meter.

Where it sits: `RolloutWorkflow.run` counts a start, `RolloutSteps` notes model loads and helm
repairs as they happen, and the run's end records what its `RolloutResult` says (outcome and
reason, phase and step durations, gate waits, rollback). `workflow.metric_meter()` records nothing
while a workflow replays, so a run replayed on another worker is not counted twice. The worker's
SDK runtime exports these beside the SDK's own metrics on its Prometheus endpoint (worker.py).

Labels stay bounded: `target` (one per rollout target), `phase`, `outcome`, `reason` (the
`FailureReason` vocabulary), `role` (prefill/decode). Never pod, step or release names. The SDK
adds its own bounded labels (namespace, task_queue, workflow_type).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from temporalio import workflow
from temporalio.common import MetricMeter

from spec.workflow_io import Outcome, Phase, RolloutResult, StepStatus

PREFIX = "llmd_rollout_"
STARTED = f"{PREFIX}started"
FINISHED = f"{PREFIX}finished"
PHASE_SECONDS = f"{PREFIX}phase_duration_seconds"
STEP_SECONDS = f"{PREFIX}step_duration_seconds"
GATE_WAIT_SECONDS = f"{PREFIX}gate_wait_seconds"
MODEL_LOAD_SECONDS = f"{PREFIX}model_load_seconds"
ROLLBACKS = f"{PREFIX}rollbacks"
HELM_REPAIRS = f"{PREFIX}helm_repairs"
CAPACITY_REFUSALS = f"{PREFIX}capacity_refusals"

# Rollout durations run from seconds (an unchanged phase) to hours (a large model's load, a gate
# waiting for a person); the SDK's default buckets stop far below that.
DURATION_BUCKETS: Sequence[float] = (
    1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200,
)
HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    name: DURATION_BUCKETS
    for name in (PHASE_SECONDS, STEP_SECONDS, GATE_WAIT_SECONDS, MODEL_LOAD_SECONDS)
}
NO_REASON = "none"
CAPACITY_REASON = "InsufficientCapacity"


class RolloutMetrics:
    """The instruments of one rollout run, labelled with its target."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._meter: MetricMeter | None = None

    @property
    def meter(self) -> MetricMeter:
        # Created on first use: workflow.metric_meter() is only callable inside a running workflow.
        if self._meter is None:
            self._meter = workflow.metric_meter().with_additional_attributes(
                {"target": self._target}
            )
        return self._meter

    def started(self) -> None:
        self.meter.create_counter(STARTED, "Rollouts started").add(1)

    def model_loaded(self, role: str, seconds: float) -> None:
        self.meter.create_histogram_float(
            MODEL_LOAD_SECONDS, "Seconds until vLLM served on every new pod of a role", "s"
        ).record(seconds, {"role": role})

    def helm_repaired(self) -> None:
        self.meter.create_counter(
            HELM_REPAIRS, "Helm releases found stuck (pending or locked) and repaired"
        ).add(1)

    def finished(self, result: RolloutResult) -> None:
        """Everything the result says: outcome, durations per phase and step, gate waits."""
        reason = result.failure.reason.value if result.failure else NO_REASON
        self.meter.create_counter(FINISHED, "Rollouts finished, by outcome and reason").add(
            1, {"outcome": result.outcome.value, "reason": reason}
        )
        if result.outcome in (Outcome.ROLLED_BACK, Outcome.ROLLBACK_FAILED):
            self.meter.create_counter(ROLLBACKS, "Rollouts that rolled back (the undo ran)").add(
                1, {"reason": reason}
            )
        if reason == CAPACITY_REASON:
            self.meter.create_counter(
                CAPACITY_REFUSALS, "Rollouts refused at preflight for want of GPU capacity"
            ).add(1)
        phases = self.meter.create_histogram_float(
            PHASE_SECONDS, "Seconds spent in each phase of a rollout", "s"
        )
        for summary in result.phases:
            if summary.phase not in (Phase.GATE, Phase.DONE):
                phases.record(summary.duration_seconds, {"phase": summary.phase.value})
        steps = self.meter.create_histogram_float(
            STEP_SECONDS, "Seconds each step took, by phase", "s"
        )
        gates = self.meter.create_histogram_float(
            GATE_WAIT_SECONDS, "Seconds a rollout waited at a gate (pause or approval)", "s"
        )
        for step in result.steps:
            if step.duration_seconds is None or step.status == StepStatus.SKIPPED:
                continue
            if step.phase == Phase.GATE:
                gates.record(step.duration_seconds)
            else:
                steps.record(step.duration_seconds, {"phase": step.phase.value})
