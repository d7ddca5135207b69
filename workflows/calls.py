"""The activities the workflows call, by name, with their result types and call options.

Where it sits: between the workflows and activities/. Import-linter keeps the two packages
independent, so workflows name activities here (the names are the contract with activities/,
the payload models live in spec/activity_io.py). Tests register small stand-ins under the same
names to exercise orchestration logic alone.

Every call heartbeats (HEARTBEAT_TIMEOUT), so a worker killed mid-activity is noticed within
seconds and the activity is retried on another worker, resuming from its heartbeat details.
Mutating calls wait for a cancelled activity to finish cancelling before the workflow moves on
(to a rollback, typically), so an undo never races the step it undoes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import (
        ApplyCrdsInput,
        ApplyModelServiceInput,
        ApplyModelServiceResult,
        ApplyResult,
        CapacityPlan,
        CrdsResult,
        DeleteObjectsInput,
        DeleteResult,
        EnsureNamespaceInput,
        HelmReleaseInput,
        HelmReleaseState,
        HelmResult,
        HelmRollbackInput,
        HelmStatusInput,
        HelmUninstallInput,
        HfTokenSecretInput,
        LastKnownGood,
        MarkLastKnownGoodInput,
        ModelLoadInput,
        ModelLoadResult,
        PreflightInput,
        PreflightReport,
        RestoreInput,
        RestoreResult,
        SecretResult,
        SnapshotInput,
        SnapshotLookupInput,
        SnapshotRef,
        VerificationResult,
        VerifyInput,
        WaitForLwsInput,
        WaitForObjectInput,
        WaitResult,
    )
    from spec.analysis_io import AnalysisInput, AnalysisResult
    from spec.cluster_io import (
        EnsureAnswer,
        EnsureAsk,
        FreeAsk,
        HoldCapacityInput,
        ReleaseAnswer,
        ReleaseAsk,
        ReserveAnswer,
    )
    from spec.rollout import RolloutSpec

In = TypeVar("In")
Out = TypeVar("Out")

# Activities heartbeat every few seconds; a silent one is presumed dead after this long.
HEARTBEAT_TIMEOUT = timedelta(seconds=10)

# A wait enforces its budget itself, counted from its first attempt, and fails with its own
# reason and what it last saw (GatewayNotProgrammed, ModelLoadBudgetExceeded, ...). Temporal's
# timeout is only the backstop, this much later: at the same moment it would win the race and
# the rollout would say a bare RolloutTimeout.
WAIT_BACKSTOP = timedelta(minutes=1)

# Transient trouble (API 5xx, a killed worker) is retried with back-off until the call's budget
# runs out; activities mark what retrying cannot fix as non-retryable.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)


@dataclass(frozen=True)
class ActivityRef(Generic[In, Out]):
    """An activity by name: what it takes, what it returns, whether it changes the cluster, and
    whether it ends itself at its input's own timeout (a wait: Temporal's budget is then the
    backstop, WAIT_BACKSTOP later)."""

    name: str
    input_type: type[In]
    result_type: type[Out]
    mutating: bool
    own_timeout: bool = False


PREFLIGHT = ActivityRef("preflight", PreflightInput, PreflightReport, mutating=False)
APPLY_CRDS = ActivityRef("apply_crds", ApplyCrdsInput, CrdsResult, mutating=True)
HELM_RELEASE_STATUS = ActivityRef(
    "helm_release_status", HelmStatusInput, HelmReleaseState, mutating=False
)
HELM_UPGRADE_INSTALL = ActivityRef(
    "helm_upgrade_install", HelmReleaseInput, HelmResult, mutating=True
)
HELM_ROLLBACK = ActivityRef("helm_rollback", HelmRollbackInput, HelmResult, mutating=True)
HELM_UNINSTALL = ActivityRef("helm_uninstall", HelmUninstallInput, HelmResult, mutating=True)
ENSURE_NAMESPACE = ActivityRef(
    "ensure_namespace", EnsureNamespaceInput, ApplyResult, mutating=True
)
ENSURE_HF_TOKEN_SECRET = ActivityRef(
    "ensure_hf_token_secret", HfTokenSecretInput, SecretResult, mutating=True
)
APPLY_MODEL_SERVICE = ActivityRef(
    "apply_model_service", ApplyModelServiceInput, ApplyModelServiceResult, mutating=True
)
DELETE_OBJECTS = ActivityRef("delete_objects", DeleteObjectsInput, DeleteResult, mutating=True)
SNAPSHOT_OBJECTS = ActivityRef("snapshot_objects", SnapshotInput, SnapshotRef, mutating=True)
READ_LAST_KNOWN_GOOD = ActivityRef(
    "read_last_known_good", SnapshotLookupInput, LastKnownGood, mutating=False
)
MARK_LAST_KNOWN_GOOD = ActivityRef(
    "mark_last_known_good", MarkLastKnownGoodInput, LastKnownGood, mutating=True
)
RESTORE_SNAPSHOT = ActivityRef("restore_snapshot", RestoreInput, RestoreResult, mutating=True)
WAIT_FOR_DEPLOYMENT = ActivityRef(
    "wait_for_deployment", WaitForObjectInput, WaitResult, mutating=False, own_timeout=True
)
WAIT_FOR_GATEWAY = ActivityRef(
    "wait_for_gateway", WaitForObjectInput, WaitResult, mutating=False, own_timeout=True
)
WAIT_FOR_ROUTE = ActivityRef(
    "wait_for_route", WaitForObjectInput, WaitResult, mutating=False, own_timeout=True
)
WAIT_FOR_LWS = ActivityRef(
    "wait_for_lws_rollout", WaitForLwsInput, WaitResult, mutating=False, own_timeout=True
)
WAIT_FOR_MODEL_LOAD = ActivityRef(
    "wait_for_model_load", ModelLoadInput, ModelLoadResult, mutating=False, own_timeout=True
)
VERIFY_GATEWAY = ActivityRef("verify_gateway", VerifyInput, VerificationResult, mutating=False)
LOAD_SPEC_FILE = ActivityRef("load_spec_file", str, RolloutSpec, mutating=False)
ANALYZE_CANARY = ActivityRef("analyze_canary", AnalysisInput, AnalysisResult, mutating=False)
# The cluster workflow's asks (workflows/cluster_calls.py, activities/cluster.py).
ENSURE_SHARED_PIECES = ActivityRef(
    "ensure_shared_pieces", EnsureAsk, EnsureAnswer, mutating=True
)
RELEASE_SHARED_PIECES = ActivityRef(
    "release_shared_pieces", ReleaseAsk, ReleaseAnswer, mutating=True
)
HOLD_CAPACITY = ActivityRef("hold_capacity", HoldCapacityInput, CapacityPlan, mutating=True)
FREE_CAPACITY = ActivityRef("free_capacity", FreeAsk, ReserveAnswer, mutating=True)

ALL: tuple[ActivityRef[Any, Any], ...] = (
    PREFLIGHT,
    APPLY_CRDS,
    HELM_RELEASE_STATUS,
    HELM_UPGRADE_INSTALL,
    HELM_ROLLBACK,
    HELM_UNINSTALL,
    ENSURE_NAMESPACE,
    ENSURE_HF_TOKEN_SECRET,
    APPLY_MODEL_SERVICE,
    DELETE_OBJECTS,
    SNAPSHOT_OBJECTS,
    READ_LAST_KNOWN_GOOD,
    MARK_LAST_KNOWN_GOOD,
    RESTORE_SNAPSHOT,
    WAIT_FOR_DEPLOYMENT,
    WAIT_FOR_GATEWAY,
    WAIT_FOR_ROUTE,
    WAIT_FOR_LWS,
    WAIT_FOR_MODEL_LOAD,
    VERIFY_GATEWAY,
    LOAD_SPEC_FILE,
    ANALYZE_CANARY,
    ENSURE_SHARED_PIECES,
    RELEASE_SHARED_PIECES,
    HOLD_CAPACITY,
    FREE_CAPACITY,
)


async def execute(
    ref: ActivityRef[In, Out],
    arg: In,
    *,
    budget: timedelta,
    summary: str,
    retry: RetryPolicy = STEP_RETRY,
) -> Out:
    """Run `ref` with `arg`; `budget` bounds each attempt and all retries together (plus the
    backstop, for an activity that ends itself at `budget`)."""
    if ref.own_timeout:
        budget += WAIT_BACKSTOP
    result: Out = await workflow.execute_activity(
        ref.name,
        arg,
        result_type=ref.result_type,
        start_to_close_timeout=budget,
        schedule_to_close_timeout=budget,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=retry,
        cancellation_type=(
            workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            if ref.mutating
            else workflow.ActivityCancellationType.TRY_CANCEL
        ),
        summary=summary,
    )
    return result


A = TypeVar("A")
B = TypeVar("B")


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Run two calls side by side; the first failure cancels the other and is raised.

    `workflow.wait` (not asyncio.wait) keeps the order of completion deterministic on replay.
    """
    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
    try:
        await workflow.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        await _cancel_all(tasks)
        raise
    for task in tasks:
        error = task.exception() if task.done() and not task.cancelled() else None
        if error is not None:
            await _cancel_all(tasks)
            raise error
    return tasks[0].result(), tasks[1].result()


async def _cancel_all(tasks: list[asyncio.Future[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await workflow.wait(pending)
