"""Test-only stand-ins for the activities, registered under the same names, over an in-memory
cluster: enough state (Helm revisions, the model-service objects per role, snapshots and the
last-known-good record) to check what the orchestration did and what a rollback restored.

They exercise workflow logic alone (saga order, gates, updates, ID conflicts, replay); the
end-to-end tests run the real activities against clustersim. Faults are decided from the fake
cluster's state (the image a role runs), as the real waits decide from pods, so the same fault
does not hit the restored old version.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import capacity_hold, cluster
from spec import load_spec
from spec.activity_io import (
    ApplyCrdsInput,
    ApplyModelServiceInput,
    ApplyModelServiceResult,
    ApplyResult,
    CapacityPlan,
    CheckResult,
    CrdsResult,
    DeleteObjectsInput,
    DeleteResult,
    EnsureNamespaceInput,
    FailureEvidence,
    HelmReleaseInput,
    HelmReleaseState,
    HelmResult,
    HelmRevision,
    HelmRollbackInput,
    HelmStatusInput,
    HelmUninstallInput,
    HfTokenSecretInput,
    LastKnownGood,
    MarkLastKnownGoodInput,
    ModelLoadInput,
    ModelLoadProgress,
    ModelLoadResult,
    ObjectOutcome,
    ObjectRef,
    PodLoadState,
    PodServing,
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
from spec.analysis_io import AnalysisInput, AnalysisResult, GroupNumbers, MetricCheck
from spec.cluster_io import HoldCapacityInput
from spec.reasons import FailureReason
from spec.rollout import RoleName, RolloutSpec
from workflows import calls

HEARTBEAT_SECONDS = 0.2


@dataclass
class Fault:
    """Fail `activity` with `reason` while `when(cluster, input)` holds."""

    activity: str
    reason: FailureReason
    message: str
    when: Callable[[FakeCluster, Any], bool] = lambda cluster, arg: True
    log_lines: list[str] = field(default_factory=list)


@dataclass
class FakeRelease:
    chart: str
    values: str
    revision: int
    history: list[tuple[int, str, str, str]]  # revision, status, chart, values


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def revision_of(spec: RolloutSpec) -> str:
    return _digest(spec.model_service.model_dump(mode="json"))


class FakeCluster:
    def __init__(self) -> None:
        self.calls: list[str] = []
        # The inputs of those calls, in the same order (what the workflow asked for).
        self.inputs: list[tuple[str, Any]] = []
        self.releases: dict[str, FakeRelease] = {}
        self.crds: set[str] = set()
        self.namespace = False
        self.secret = False
        # The model-service objects: the revision of the shared objects and, per role, what runs.
        self.model_service: dict[str, Any] | None = None
        self.snapshots: dict[str, dict[str, Any] | None] = {}
        # The spec stored with each snapshot (SnapshotInput.spec), as the real ConfigMap keeps it.
        self.snapshot_specs: dict[str, RolloutSpec | None] = {}
        self.last_known_good: str | None = None
        self.capacity_fits = True
        self.cluster_uid = ""  # the kube-system UID the capacity hold reports reading
        self.faults: list[Fault] = []
        self.holds: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}
        self.load_seconds = 0.0
        # Verification through the gateway fails (503) while a role runs this image.
        self.unservable_image: str | None = None
        # The verdicts the analysis activity answers, in turn (then "pass").
        self.analysis_verdicts: list[str] = []

    # --- test helpers -----------------------------------------------------------------------

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.preflight, self.hold_capacity, self.apply_crds, self.helm_release_status,
            self.helm_upgrade_install,
            self.helm_rollback, self.helm_uninstall, self.ensure_namespace,
            self.ensure_hf_token_secret, self.apply_model_service, self.delete_objects,
            self.snapshot_objects, self.read_last_known_good, self.mark_last_known_good,
            self.restore_snapshot, self.wait_for_deployment, self.wait_for_gateway,
            self.wait_for_route, self.wait_for_lws_rollout, self.wait_for_model_load,
            self.verify_gateway, self.load_spec_file, self.analyze_canary,
            # The real asks: they reach the ClusterWorkflow, which calls the stand-ins above.
            cluster.ensure_shared_pieces, cluster.release_shared_pieces,
            capacity_hold.free_capacity,
        ]

    def hold(self, name: str) -> asyncio.Event:
        """Make `name` wait (heartbeating) until the returned event is set."""
        self.holds[name] = asyncio.Event()
        return self.holds[name]

    def entered(self, name: str) -> asyncio.Event:
        """Set when `name` next starts."""
        self.started[name] = asyncio.Event()
        return self.started[name]

    def image(self, role: RoleName) -> str | None:
        if self.model_service is None:
            return None
        running = self.model_service["roles"].get(role)
        return None if running is None else str(running["image"])

    def helm_revision(self, name: str) -> int | None:
        release = self.releases.get(name)
        return None if release is None else release.revision

    def names(self, prefix: str) -> list[str]:
        return [c for c in self.calls if c.startswith(prefix)]

    async def _enter(self, name: str, arg: Any, detail: str = "", beat: Any = None) -> None:
        self.calls.append(f"{name}{':' + detail if detail else ''}")
        self.inputs.append((name, arg))
        if name in self.started:
            self.started[name].set()
        for fault in self.faults:
            if fault.activity == name and fault.when(self, arg):
                evidence = FailureEvidence(
                    reason=fault.reason.value, message=fault.message, log_lines=fault.log_lines
                )
                raise ApplicationError(
                    fault.message, evidence.to_details(), type=fault.reason.value,
                    non_retryable=True,
                )
        hold = self.holds.get(name)
        if hold is not None:
            while not hold.is_set():
                activity.heartbeat(beat or {"detail": f"{name} held by the test"})
                try:
                    await asyncio.wait_for(hold.wait(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    continue

    # --- preflight ------------------------------------------------------------------------

    @activity.defn(name=calls.PREFLIGHT.name)
    async def preflight(self, arg: PreflightInput) -> PreflightReport:
        await self._enter(calls.PREFLIGHT.name, arg)
        plan = self._plan(arg.spec, list(arg.roles))
        return PreflightReport(server_version="v1.31.0", helm_version="v4.1.4", capacity=plan)

    @activity.defn(name=calls.HOLD_CAPACITY.name)
    async def hold_capacity(self, arg: HoldCapacityInput) -> CapacityPlan:
        await self._enter(calls.HOLD_CAPACITY.name, arg)
        plan = self._plan(arg.spec, list(arg.roles))
        return plan.model_copy(update={"cluster_uid": self.cluster_uid})

    def _plan(self, spec: RolloutSpec, roles: list[RoleName]) -> CapacityPlan:
        gpus = sum(spec.model_service.role(role).gpus for role in roles)
        return CapacityPlan(
            fits=self.capacity_fits, gpus_asked=gpus, gpus_available=16,
            asked={}, available={}, pods=[], nodes=[],
        )

    # --- dependencies, namespace ----------------------------------------------------------

    @activity.defn(name=calls.APPLY_CRDS.name)
    async def apply_crds(self, arg: ApplyCrdsInput) -> CrdsResult:
        await self._enter(calls.APPLY_CRDS.name, arg, arg.bundle_name)
        outcomes = []
        for name in arg.expected:
            action = "unchanged" if name in self.crds else "created"
            self.crds.add(name)
            ref = ObjectRef(
                api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition", name=name
            )
            outcomes.append(ObjectOutcome(ref=ref, action=action))
        return CrdsResult(
            apply=ApplyResult(outcomes=outcomes), established=list(arg.expected),
            skipped=arg.bundle.already_installed,
        )

    @activity.defn(name=calls.ENSURE_NAMESPACE.name)
    async def ensure_namespace(self, arg: EnsureNamespaceInput) -> ApplyResult:
        await self._enter(calls.ENSURE_NAMESPACE.name, arg)
        action = "unchanged" if self.namespace else "created"
        self.namespace = True
        ref = ObjectRef(api_version="v1", kind="Namespace", name=arg.target.namespace)
        return ApplyResult(outcomes=[ObjectOutcome(ref=ref, action=action)])

    @activity.defn(name=calls.ENSURE_HF_TOKEN_SECRET.name)
    async def ensure_hf_token_secret(self, arg: HfTokenSecretInput) -> SecretResult:
        await self._enter(calls.ENSURE_HF_TOKEN_SECRET.name, arg)
        action = "unchanged" if self.secret else "created"
        self.secret = True
        return SecretResult(
            name=arg.hf_token.secret_name, namespace=arg.target.namespace,
            key=arg.hf_token.secret_key, action=action,
        )

    # --- helm -----------------------------------------------------------------------------

    def _state(self, name: str, namespace: str) -> HelmReleaseState:
        release = self.releases.get(name)
        if release is None:
            return HelmReleaseState(release_name=name, namespace=namespace, exists=False)
        history = [
            HelmRevision(revision=rev, status=status, chart=chart)
            for rev, status, chart, _ in release.history
        ]
        return HelmReleaseState(
            release_name=name, namespace=namespace, exists=True, revision=release.revision,
            status="deployed", chart=release.chart, history=history,
        )

    def _deploy(self, name: str, chart: str, values: str) -> FakeRelease:
        release = self.releases.get(name)
        if release is None:
            release = FakeRelease(chart, values, 1, [(1, "deployed", chart, values)])
            self.releases[name] = release
            return release
        release.history = [
            (rev, "superseded", c, v) for rev, _, c, v in release.history
        ]
        release.revision += 1
        release.chart, release.values = chart, values
        release.history.append((release.revision, "deployed", chart, values))
        return release

    @activity.defn(name=calls.HELM_RELEASE_STATUS.name)
    async def helm_release_status(self, arg: HelmStatusInput) -> HelmReleaseState:
        await self._enter(calls.HELM_RELEASE_STATUS.name, arg, arg.release_name)
        return self._state(arg.release_name, arg.namespace)

    @activity.defn(name=calls.HELM_UPGRADE_INSTALL.name)
    async def helm_upgrade_install(self, arg: HelmReleaseInput) -> HelmResult:
        name = arg.release.release_name
        await self._enter(calls.HELM_UPGRADE_INSTALL.name, arg, name)
        namespace = arg.release.namespace or arg.target.namespace
        chart = arg.release.chart.path or arg.release.chart.version or ""
        values = _digest(arg.release.values)
        existing = self.releases.get(name)
        if existing is not None and (existing.chart, existing.values) == (chart, values):
            return HelmResult(
                release_name=name, namespace=namespace, action="unchanged",
                revision=existing.revision, status="deployed",
            )
        release = self._deploy(name, chart, values)
        return HelmResult(
            release_name=name, namespace=namespace,
            action="installed" if existing is None else "upgraded",
            revision=release.revision, status="deployed",
        )

    @activity.defn(name=calls.HELM_ROLLBACK.name)
    async def helm_rollback(self, arg: HelmRollbackInput) -> HelmResult:
        await self._enter(calls.HELM_ROLLBACK.name, arg, f"{arg.release_name}->{arg.revision}")
        release = self.releases[arg.release_name]
        _, _, chart, values = next(h for h in release.history if h[0] == arg.revision)
        release = self._deploy(arg.release_name, chart, values)
        return HelmResult(
            release_name=arg.release_name, namespace=arg.namespace, action="rolled-back",
            revision=release.revision, status="deployed",
        )

    @activity.defn(name=calls.HELM_UNINSTALL.name)
    async def helm_uninstall(self, arg: HelmUninstallInput) -> HelmResult:
        await self._enter(calls.HELM_UNINSTALL.name, arg, arg.release_name)
        existed = self.releases.pop(arg.release_name, None) is not None
        return HelmResult(
            release_name=arg.release_name, namespace=arg.namespace,
            action="uninstalled" if existed else "absent",
        )

    # --- model service --------------------------------------------------------------------

    @activity.defn(name=calls.APPLY_MODEL_SERVICE.name)
    async def apply_model_service(self, arg: ApplyModelServiceInput) -> ApplyModelServiceResult:
        detail = arg.part if arg.partition is None else f"{arg.part}@{arg.partition}"
        await self._enter(calls.APPLY_MODEL_SERVICE.name, arg, detail)
        revision = revision_of(arg.spec)
        before = copy.deepcopy(self.model_service)
        state = self.model_service or {"revision": None, "roles": {}}
        if arg.part in ("shared", "all"):
            state["revision"] = revision
        roles: tuple[RoleName, ...] = (
            ("prefill", "decode") if arg.part == "all"
            else (arg.part,) if arg.part != "shared" else ()
        )
        for role in roles:
            state["roles"][role] = {
                "image": arg.spec.model_service.image_for(role),
                "partition": arg.partition or 0,
            }
        self.model_service = state
        action = "unchanged" if before == state else "configured" if before else "created"
        ref = ObjectRef(api_version="v1", kind="ModelService", name=arg.part)
        return ApplyModelServiceResult(
            revision=revision, apply=ApplyResult(outcomes=[ObjectOutcome(ref=ref, action=action)])
        )

    @activity.defn(name=calls.DELETE_OBJECTS.name)
    async def delete_objects(self, arg: DeleteObjectsInput) -> DeleteResult:
        detail = arg.rollout or ",".join(r.name for r in arg.refs)
        await self._enter(calls.DELETE_OBJECTS.name, arg, detail)
        outcomes = []
        if arg.rollout and self.model_service is not None:
            self.model_service = None
            ref = ObjectRef(api_version="v1", kind="ModelService", name=arg.rollout)
            outcomes.append(ObjectOutcome(ref=ref, action="deleted"))
        for ref in arg.refs:
            outcomes.append(ObjectOutcome(ref=ref, action="deleted"))
            if ref.kind == "Namespace":
                self.namespace = self.secret = False
                self.snapshots.clear()
                self.snapshot_specs.clear()
                self.last_known_good = None
        return DeleteResult(outcomes=outcomes)

    def _snapshot_ref(self, rollout: str, revision: str) -> SnapshotRef:
        return SnapshotRef(
            rollout=rollout, revision=revision, namespace="fake",
            config_map=f"llmd-rollout-snapshot-{rollout}-{revision}",
            spec=self.snapshot_specs.get(revision),
        )

    @activity.defn(name=calls.SNAPSHOT_OBJECTS.name)
    async def snapshot_objects(self, arg: SnapshotInput) -> SnapshotRef:
        await self._enter(calls.SNAPSHOT_OBJECTS.name, arg, arg.revision)
        changed = (
            arg.revision not in self.snapshots
            or self.snapshots[arg.revision] != self.model_service
            or self.snapshot_specs.get(arg.revision) != arg.spec
        )
        self.snapshots[arg.revision] = copy.deepcopy(self.model_service)
        self.snapshot_specs[arg.revision] = arg.spec
        ref = self._snapshot_ref(arg.rollout, arg.revision)
        return ref.model_copy(update={"action": "created" if changed else "unchanged"})

    @activity.defn(name=calls.READ_LAST_KNOWN_GOOD.name)
    async def read_last_known_good(self, arg: SnapshotLookupInput) -> LastKnownGood:
        await self._enter(calls.READ_LAST_KNOWN_GOOD.name, arg)
        if self.last_known_good is None:
            return LastKnownGood(rollout=arg.rollout, revision=None)
        snapshot = self._snapshot_ref(arg.rollout, self.last_known_good)
        return LastKnownGood(
            rollout=arg.rollout, revision=self.last_known_good, snapshot=snapshot,
            spec=snapshot.spec,
        )

    @activity.defn(name=calls.MARK_LAST_KNOWN_GOOD.name)
    async def mark_last_known_good(self, arg: MarkLastKnownGoodInput) -> LastKnownGood:
        await self._enter(calls.MARK_LAST_KNOWN_GOOD.name, arg, arg.revision)
        action = "unchanged" if self.last_known_good == arg.revision else "configured"
        self.last_known_good = arg.revision
        snapshot = self._snapshot_ref(arg.rollout, arg.revision)
        return LastKnownGood(
            rollout=arg.rollout, revision=arg.revision, snapshot=snapshot, spec=snapshot.spec,
            action=action,
        )

    @activity.defn(name=calls.RESTORE_SNAPSHOT.name)
    async def restore_snapshot(self, arg: RestoreInput) -> RestoreResult:
        revision = arg.revision or self.last_known_good or ""
        await self._enter(calls.RESTORE_SNAPSHOT.name, arg, revision)
        self.model_service = copy.deepcopy(self.snapshots[revision])
        ref = ObjectRef(api_version="v1", kind="ModelService", name=revision)
        return RestoreResult(
            revision=revision,
            apply=ApplyResult(outcomes=[ObjectOutcome(ref=ref, action="configured")]),
        )

    # --- waits ----------------------------------------------------------------------------

    def _waited(self, name: str, namespace: str | None) -> WaitResult:
        ref = ObjectRef(api_version="v1", kind="Object", name=name, namespace=namespace)
        return WaitResult(ref=ref, detail="ready", elapsed_seconds=0.0)

    @activity.defn(name=calls.WAIT_FOR_DEPLOYMENT.name)
    async def wait_for_deployment(self, arg: WaitForObjectInput) -> WaitResult:
        await self._enter(calls.WAIT_FOR_DEPLOYMENT.name, arg, arg.name)
        return self._waited(arg.name, arg.namespace)

    @activity.defn(name=calls.WAIT_FOR_GATEWAY.name)
    async def wait_for_gateway(self, arg: WaitForObjectInput) -> WaitResult:
        await self._enter(calls.WAIT_FOR_GATEWAY.name, arg, arg.name)
        return self._waited(arg.name, arg.namespace)

    @activity.defn(name=calls.WAIT_FOR_ROUTE.name)
    async def wait_for_route(self, arg: WaitForObjectInput) -> WaitResult:
        await self._enter(calls.WAIT_FOR_ROUTE.name, arg, arg.name)
        return self._waited(arg.name, arg.namespace)

    @activity.defn(name=calls.WAIT_FOR_LWS.name)
    async def wait_for_lws_rollout(self, arg: WaitForLwsInput) -> WaitResult:
        await self._enter(calls.WAIT_FOR_LWS.name, arg, f"{arg.name}@{arg.partition}")
        return self._waited(arg.name, arg.namespace)

    @activity.defn(name=calls.WAIT_FOR_MODEL_LOAD.name)
    async def wait_for_model_load(self, arg: ModelLoadInput) -> ModelLoadResult:
        role = arg.role
        pods = arg.spec.model_service.role(role).pods
        progress = ModelLoadProgress(
            started_at=datetime.now(UTC), role=role, expected=pods,
            pods=[
                PodLoadState(name=f"{role}-{i}", phase="loading", weights_percent=42.0)
                for i in range(pods)
            ],
        ).model_dump(mode="json")
        activity.heartbeat(progress)
        await self._enter(
            calls.WAIT_FOR_MODEL_LOAD.name, arg, f"{role}@{arg.partition}", beat=progress
        )
        loop = asyncio.get_running_loop()
        loaded_at = loop.time() + self.load_seconds
        while loop.time() < loaded_at:
            activity.heartbeat(progress)
            await asyncio.sleep(HEARTBEAT_SECONDS)
        serving = [
            PodServing(name=f"{role}-{i}", port=8000, models=[arg.spec.model_service.model_name])
            for i in range(pods)
        ]
        return ModelLoadResult(
            role=role, revision_hash=self.image(role), pods=serving, elapsed_seconds=0.0
        )

    @activity.defn(name=calls.ANALYZE_CANARY.name)
    async def analyze_canary(self, arg: AnalysisInput) -> AnalysisResult:
        await self._enter(calls.ANALYZE_CANARY.name, arg, arg.step)
        verdict = self.analysis_verdicts.pop(0) if self.analysis_verdicts else "pass"
        check = MetricCheck(
            metric="ttft", canary=0.1, stable=0.05, limit=0.0625, bound="relative",
            passed={"pass": True, "fail": False}.get(verdict),
            detail=f"ttft p90 staged {verdict}",
        )
        group = GroupNumbers(
            pods=["p"], requests=20, errors=0, error_rate=0, ttft_seconds=0.1,
            tpot_seconds=0.03, e2e_seconds=0.5, kv_transfers=20,
        )
        return AnalysisResult(
            verdict=verdict,  # type: ignore[arg-type]
            summary=check.detail, checks=[check], canary=group, stable=group,
            quantile=arg.analysis.quantile, window_seconds=1, source="direct",
        )

    @activity.defn(name=calls.VERIFY_GATEWAY.name)
    async def verify_gateway(self, arg: VerifyInput) -> VerificationResult:
        await self._enter(calls.VERIFY_GATEWAY.name, arg)
        running = {self.image("prefill"), self.image("decode")}
        if self.unservable_image is not None and self.unservable_image in running:
            return VerificationResult(
                checks=[
                    CheckResult(name="models", passed=True, detail="model listed"),
                    CheckResult(
                        name="completion", passed=False,
                        detail="POST /v1/completions through the gateway answered 503",
                        response="no healthy upstream",
                    ),
                ]
            )
        return VerificationResult(
            checks=[
                CheckResult(name="models", passed=True, detail="model listed"),
                CheckResult(name="completion", passed=True, detail="32 tokens"),
                CheckResult(name="disaggregation", passed=True, detail="prefill and decode"),
            ]
        )

    @activity.defn(name=calls.LOAD_SPEC_FILE.name)
    async def load_spec_file(self, path: str) -> RolloutSpec:
        await self._enter(calls.LOAD_SPEC_FILE.name, path)
        return load_spec(path)
