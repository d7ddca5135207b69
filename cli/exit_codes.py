"""Exit codes: part of the interface, so a CI job can tell an approval wait from a rollback.

Where it sits: every command returns one of these; `for_result` and `for_progress` map a
rollout's outcome (spec.workflow_io.Outcome) to them, the only place that mapping lives.
"""

from __future__ import annotations

from enum import IntEnum

from spec.reasons import FailureReason
from spec.workflow_io import Outcome, Phase, Progress, RolloutResult, RunState


class ExitCode(IntEnum):
    SUCCESS = 0
    USAGE = 1
    WAITING_FOR_APPROVAL = 2
    ROLLED_BACK = 3
    FAILED = 4
    REFUSED = 5
    ALREADY_RUNNING = 6
    # `plan`: the rollout would change something (as `kubectl diff` exits 1 on differences;
    # 1 is ours for usage errors).
    CHANGES = 7
    # Failed (nothing rolled back) because the API server refused the worker a verb: a person
    # must grant the RBAC rule the failure names; re-running as is fails the same way.
    PERMISSION_DENIED = 8


EXIT_CODES_HELP = """exit codes:
  0  success
  1  usage or connection error
  2  waiting for approval
  3  failed and rolled back
  4  failed without rollback
  5  refused (invalid spec or preflight)
  6  a rollout of this target is already running
  7  plan: the rollout would change something, or wait for GPUs (0: nothing would)
  8  failed without rollback: the worker's RBAC lacks a rule (the failure names it)"""


def for_outcome(
    outcome: Outcome,
    failed_phase: Phase | None = None,
    failed_reason: FailureReason | None = None,
) -> ExitCode:
    """The code of a finished rollout or teardown.

    A failure in preflight changed nothing: the cluster refused the rollout (e.g. a capacity
    plan that does not fit), which scripts handle like an invalid spec. A missing permission
    outranks both "failed" and "refused": only granting the rule helps. A rollback that
    restored the previous version is "rolled back" whatever the reason.
    """
    if outcome in (Outcome.SUCCEEDED, Outcome.REMOVED):
        return ExitCode.SUCCESS
    if outcome == Outcome.ROLLED_BACK:
        return ExitCode.ROLLED_BACK
    if failed_reason == FailureReason.PERMISSION_DENIED:
        return ExitCode.PERMISSION_DENIED
    if failed_phase == Phase.PREFLIGHT:
        return ExitCode.REFUSED
    return ExitCode.FAILED


def for_result(result: RolloutResult) -> ExitCode:
    if result.failure is None:
        return for_outcome(result.outcome)
    return for_outcome(result.outcome, result.failure.phase, result.failure.reason)


def for_progress(progress: Progress) -> ExitCode | None:
    """The code a watcher stops with now, or None while the rollout simply runs on."""
    if progress.state == RunState.WAITING_FOR_APPROVAL:
        return ExitCode.WAITING_FOR_APPROVAL
    return None
