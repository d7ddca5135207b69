"""The analysis gate of a model-service step: run the window, act on the verdict.

Where it sits: RolloutWorkflow calls `RolloutAnalysis.gate` after a plan step that carries an
`analysis` (workflows/plan.py), after its verification and before its pause or approval. The
analysis activity (activities/analysis.py) watches the window and returns the verdict with its
numbers; here the verdict becomes what the rollout does:

- pass: go on;
- fail: raise StepFailed(AnalysisFailed) naming the metric, both values and the bound, with the
  whole result as evidence; the rollout rolls back as for any other failure;
- inconclusive (too few requests): per `onInconclusive`, run another window (up to
  `maxRetries` more), fail with AnalysisInconclusive, or wait for a person's approval at the
  gate `analysis/<step>` (the existing approval update of workflows/control.py).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.analysis import Analysis
    from spec.analysis_io import AnalysisInput, AnalysisResult
    from spec.reasons import FailureReason
    from spec.rollout import Gate, RolloutSpec
    from spec.workflow_io import Phase, StepStatus
    from workflows import calls
    from workflows.control import RolloutControl
    from workflows.failures import StepFailed
    from workflows.plan import RoleStep
    from workflows.steps import RolloutSteps

# Beyond the window: reading every pod's metrics twice, and a Prometheus settle interval.
ANALYSIS_MARGIN = timedelta(minutes=2)
_STATUS = {"pass": StepStatus.PASSED, "fail": StepStatus.FAILED, "inconclusive": StepStatus.SKIPPED}


def analysis_budget(analysis: Analysis) -> timedelta:
    settle = analysis.prometheus.scrape_interval if analysis.prometheus is not None else timedelta()
    return analysis.window + settle + ANALYSIS_MARGIN


class RolloutAnalysis:
    def __init__(self, spec: RolloutSpec, steps: RolloutSteps, control: RolloutControl) -> None:
        self._spec = spec
        self._steps = steps
        self._control = control

    async def _window(self, step: RoleStep, analysis: Analysis, attempt: int) -> AnalysisResult:
        name = f"analysis/{step.name}" + (f"/retry-{attempt - 1}" if attempt > 1 else "")
        return await self._steps.call(
            Phase.VERIFY, name, calls.ANALYZE_CANARY,
            AnalysisInput(spec=self._spec, role=step.role, analysis=analysis, step=step.name),
            budget=analysis_budget(analysis),
            summary=(
                f"analyse the updated {step.role} pods for {analysis.window.total_seconds():g}s"
                + (" under synthetic load" if analysis.load is not None else "")
            ),
            status=lambda r: _STATUS[r.verdict],
            detail=lambda r: f"{r.verdict}: {r.summary}",
        )

    async def gate(self, step: RoleStep) -> None:
        analysis = step.analysis
        assert analysis is not None
        attempt = 1
        while True:
            result = await self._window(step, analysis, attempt)
            if result.verdict == "pass":
                return
            evidence = {"analysis": result.model_dump(mode="json")}
            if result.verdict == "fail":
                raise StepFailed(
                    FailureReason.ANALYSIS_FAILED,
                    f"analysis of {step.name} failed: {result.summary}",
                    evidence,
                )
            if analysis.on_inconclusive == "retry" and attempt <= analysis.max_retries:
                attempt += 1
                continue
            if analysis.on_inconclusive == "approval":
                await self._control.pass_gate(f"analysis/{step.name}", Gate(approval=True))
                return
            windows = f" after {attempt} windows" if attempt > 1 else ""
            raise StepFailed(
                FailureReason.ANALYSIS_INCONCLUSIVE,
                f"analysis of {step.name} was inconclusive{windows}: {result.summary}",
                evidence,
            )
