"""The inputs and outputs of every activity: the contract between workflows and activities.

Where it sits: workflows build these models and pass them to the activities in `activities/`
(kube, helm, serving, preflight); the worker's `pydantic_data_converter` carries them through
Temporal. Every model is plain data (no secrets, no clients) so it can sit in workflow history:
the Hugging Face token, for instance, is named here (`HfToken.from_env`) but its value is read only
inside the secret activity.

Failures are not outputs: an activity that detects one raises a non-retryable `ApplicationError`
whose `type` is a `FailureReason` value and whose single detail is a `FailureEvidence` dumped to
JSON (`FailureEvidence.from_details(error.details)` reads it back in a workflow).

Naming: `...Input` is what an activity takes, `...Result` what it returns, `...Progress` what it
heartbeats (and resumes from when retried).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spec.crds import CrdBundleName
from spec.rollout import ROLES, CrdBundle, HelmRelease, HfToken, RoleName, RolloutSpec, Target

FIELD_MANAGER = "llmd-rollout"
"""The server-side apply field manager of every object we write."""

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "llmd-rollout"
ROLLOUT_LABEL = "llmd-rollout.llm-d.ai/rollout"
"""With MANAGED_BY_LABEL=MANAGED_BY_VALUE, selects the objects one rollout target owns."""
SNAPSHOT_OF_LABEL = "llmd-rollout.llm-d.ai/snapshot-of"
"""Marks our snapshot ConfigMaps (they carry no ROLLOUT_LABEL, so a snapshot never holds one)."""


class IOModel(BaseModel):
    """Base of every activity input and output: immutable, unknown fields ignored.

    Ignored, not rejected: a rollout can outlive a worker release, so an older worker must decode
    a payload (a heartbeat, a `LastKnownGood`) that a newer one wrote with fields it added.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- Kubernetes objects ---------------------------------------------------------------------


class ObjectRef(IOModel):
    """One Kubernetes object by apiVersion, kind, name and (unless cluster-scoped) namespace."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        metadata = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion", "")),
            kind=str(obj.get("kind", "")),
            name=str(metadata.get("name", "")),
            namespace=metadata.get("namespace"),
        )


ObjectAction = Literal["created", "configured", "unchanged", "deleted", "absent"]


class ObjectOutcome(IOModel):
    """What one mutating call did to one object; `resource_version` is the one it left."""

    ref: ObjectRef
    action: ObjectAction
    resource_version: str | None = None


class ApplyResult(IOModel):
    """The outcome of a server-side apply (or restore) of a set of objects."""

    outcomes: list[ObjectOutcome] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(o.action != "unchanged" and o.action != "absent" for o in self.outcomes)

    def count(self, action: ObjectAction) -> int:
        return sum(1 for o in self.outcomes if o.action == action)


ModelServicePart = Literal["shared", "prefill", "decode", "all"]


class ApplyModelServiceInput(IOModel):
    """Render the model-service objects of `spec` (manifests/) and server-side apply them (forced).

    `part`: `shared` (EPP, RBAC, InferencePool/Model, HTTPRoute), one role's LeaderWorkerSet, or
    `all`. `partition` sets the LWS rolling-update partition (canary: only groups >= partition are
    updated); `max_surge` overrides the strategy's surge (the capacity plan may drop it to 0).
    """

    spec: RolloutSpec
    part: ModelServicePart = "all"
    partition: int | None = Field(default=None, ge=0)
    max_surge: int | None = Field(default=None, ge=0)


class ApplyModelServiceResult(IOModel):
    revision: str = Field(description="manifests.spec_revision(spec) of what was applied.")
    apply: ApplyResult


class EnsureNamespaceInput(IOModel):
    target: Target
    namespace: str | None = Field(default=None, description="Defaults to the target namespace.")


class ApplyCrdsInput(IOModel):
    """Install a CRD bundle (builtin, local file/dir, or http(s) URL) and wait until Established.

    With `bundle.already_installed` nothing is applied; the CRDs are only checked (present and
    Established), `expected` naming the CRDs that must exist
    (e.g. `gateways.gateway.networking.k8s.io`).
    """

    target: Target
    bundle: CrdBundle
    bundle_name: CrdBundleName
    expected: list[str] = Field(default_factory=list)
    timeout: timedelta = timedelta(minutes=2)


class CrdsResult(IOModel):
    apply: ApplyResult
    established: list[str] = Field(description="Names of the CRDs now Established.")
    skipped: bool = False


class HfTokenSecretInput(IOModel):
    """Create/update the HF token Secret from the worker's `hf_token.from_env` variable, or (with
    `existing_secret`) verify that the Secret exists and holds `secret_key`."""

    target: Target
    hf_token: HfToken


class SecretResult(IOModel):
    name: str
    namespace: str
    key: str
    action: Literal["created", "configured", "unchanged", "verified"]


class DeleteObjectsInput(IOModel):
    """Delete objects (by ref, or every object a rollout owns) and wait until they are gone."""

    target: Target
    refs: list[ObjectRef] = Field(default_factory=list)
    rollout: str | None = Field(default=None, description="Also delete what this rollout owns.")
    propagation: Literal["Foreground", "Background", "Orphan"] = "Foreground"
    timeout: timedelta = timedelta(minutes=5)


class DeleteResult(IOModel):
    outcomes: list[ObjectOutcome] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(o.action == "deleted" for o in self.outcomes)


# --- Snapshots and last-known-good ---------------------------------------------------------


class SnapshotInput(IOModel):
    """Store every object `rollout` owns in the target namespace in a ConfigMap of ours,
    `llmd-rollout-snapshot-<rollout>-<revision>`, so a rollback can restore them even if the
    Temporal history is gone. What is stored of each object is its applied configuration: the
    fields field manager `llmd-rollout` applied (its managedFields entry), never what the server
    or a webhook defaulted (k8s/snapshot.py). `revision` names what the objects are (e.g.
    the spec revision that produced them); `spec`, the spec that produced them, is stored too
    (it holds no secret: only the name of the HF token's environment variable). Re-taking the
    same revision replaces it only when the objects or the spec changed."""

    target: Target
    rollout: str
    revision: str
    spec: RolloutSpec | None = None


class SnapshotRef(IOModel):
    rollout: str
    revision: str
    config_map: str
    namespace: str
    objects: list[ObjectRef] = Field(default_factory=list)
    action: Literal["created", "configured", "unchanged", "found"] = "found"
    spec: RolloutSpec | None = Field(
        default=None, description="The spec stored with the snapshot (None: taken without one)."
    )


class SnapshotLookupInput(IOModel):
    target: Target
    rollout: str
    revision: str | None = Field(default=None, description="None: the last-known-good one.")


class MarkLastKnownGoodInput(IOModel):
    """Point `llmd-rollout-last-known-good-<rollout>` at the snapshot of `revision` (must exist)."""

    target: Target
    rollout: str
    revision: str


class LastKnownGood(IOModel):
    rollout: str
    revision: str | None = Field(description="None: nothing recorded yet for this rollout.")
    snapshot: SnapshotRef | None = None
    action: Literal["created", "configured", "unchanged", "found"] = "found"
    spec: RolloutSpec | None = Field(
        default=None,
        description=(
            "The spec of that revision, as stored with its snapshot (None: nothing recorded, or "
            "a snapshot taken without one): a rollback waits for and verifies the old version "
            "under its own names."
        ),
    )


class RestoreInput(IOModel):
    """Server-side apply (forced, field manager `llmd-rollout`) the applied configurations a
    snapshot holds, so field ownership ends up exactly as after the original apply, and delete
    objects the rollout owns now that the snapshot does not hold. `revision=None` restores the
    last-known-good one."""

    target: Target
    rollout: str
    revision: str | None = None
    timeout: timedelta = timedelta(minutes=5)


class RestoreResult(IOModel):
    revision: str
    apply: ApplyResult
    deleted: list[ObjectOutcome] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.apply.changed or any(o.action == "deleted" for o in self.deleted)


# --- Waits ------------------------------------------------------------------------------------


class WaitForObjectInput(IOModel):
    """Wait for a Deployment (Available), Gateway (Programmed) or HTTPRoute (Accepted and
    ResolvedRefs on every parent). `timeout` is the wait's own budget: it fails with a reason
    (RolloutTimeout, GatewayNotProgrammed, RouteNotAccepted) before Temporal's timeout."""

    target: Target
    name: str
    namespace: str | None = Field(default=None, description="Defaults to the target namespace.")
    timeout: timedelta = timedelta(minutes=10)


class WaitForLwsInput(IOModel):
    """Wait until a LeaderWorkerSet's rollout is complete for the groups >= `partition`:
    generation observed, updatedReplicas and readyReplicas, condition Available, and every pod of
    those groups on the current template-revision-hash. Fails fast with a pod failure reason."""

    target: Target
    name: str
    namespace: str | None = None
    partition: int = Field(default=0, ge=0)
    timeout: timedelta = timedelta(minutes=10)


class WaitResult(IOModel):
    ref: ObjectRef
    detail: str = Field(description="The state that satisfied the wait, in words.")
    elapsed_seconds: float
    api_requests: int = Field(default=0, description="Kubernetes API requests this attempt made.")


# The key under which an activity's heartbeat says what it is doing (activities/heartbeat.py
# `heartbeat_step` writes it; workflows/failures.py reads it back when the activity times out).
HEARTBEAT_STEP = "step"


class WaitProgress(IOModel):
    """Heartbeat details of a wait: `started_at` survives retries so the budget is not reset."""

    started_at: datetime
    resource_version: str | None = None
    detail: str = ""


# --- Model load ------------------------------------------------------------------------------


class ModelLoadInput(IOModel):
    """Wait until vLLM serves on every pod of `role` (groups >= partition) of the current LWS
    revision: /health and /v1/models through the API server pod proxy, within
    `spec.budgets.model_load` (counted from the first attempt)."""

    spec: RolloutSpec
    role: RoleName
    partition: int = Field(default=0, ge=0)


PodLoadPhase = Literal[
    "pending", "pulling", "starting", "loading", "serving-probe", "serving", "failed"
]


class PodLoadState(IOModel):
    name: str
    group: int | None = None
    node: str | None = None
    revision_hash: str | None = Field(
        default=None, description="The pod's LWS template-revision-hash label: which revision "
        "of the LeaderWorkerSet it runs (ModelLoadProgress.revision_hash is the new one)."
    )
    image: str | None = Field(default=None, description="The vLLM container's image.")
    phase: PodLoadPhase = "pending"
    weights_percent: float | None = Field(
        default=None, description="From 'Loading safetensors checkpoint shards: N% Completed'."
    )
    detail: str = ""


class ModelLoadProgress(IOModel):
    """Heartbeat details of the model-load wait (and what it resumes from)."""

    started_at: datetime
    role: RoleName
    revision_hash: str | None = None
    pods: list[PodLoadState] = Field(default_factory=list)
    serving: int = 0
    expected: int = 0

    def summary(self) -> str:
        loading = [p for p in self.pods if p.weights_percent is not None and p.phase != "serving"]
        percent = ", ".join(f"{p.name} {p.weights_percent:.0f}%" for p in loading)
        return f"{self.role}: {self.serving}/{self.expected} pods serving" + (
            f"; loading weights: {percent}" if percent else ""
        )


class PodServing(IOModel):
    name: str
    group: int | None = None
    node: str | None = None
    port: int
    models: list[str]


class ModelLoadResult(IOModel):
    role: RoleName
    revision_hash: str | None
    pods: list[PodServing]
    elapsed_seconds: float
    api_requests: int = 0


# --- Verification ----------------------------------------------------------------------------


class VerifyInput(IOModel):
    """Check the stack through the gateway as `spec.verification` says."""

    spec: RolloutSpec


class CheckResult(IOModel):
    name: Literal["models", "completion", "disaggregation"]
    passed: bool
    detail: str
    response: str | None = Field(default=None, description="The (truncated) response on failure.")


class RoleTraffic(IOModel):
    """How much a role's pods served during the verification request (sum over its pods)."""

    role: RoleName
    pods: list[str]
    prompt_tokens: float
    generation_tokens: float
    requests: float


class VerificationResult(IOModel):
    checks: list[CheckResult]
    models: list[str] = Field(default_factory=list)
    completion_text: str = ""
    completion_tokens: int = 0
    traffic: list[RoleTraffic] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


# --- Helm ------------------------------------------------------------------------------------


class HelmReleaseInput(IOModel):
    """`helm upgrade --install` of `release` (values in a 0600 temp file, version pinned,
    --create-namespace). A release stuck in pending-* by a killed helm is repaired first.
    Unchanged chart version and values: no new revision (`action="unchanged"`)."""

    target: Target
    release: HelmRelease
    wait: bool = True
    timeout: timedelta = timedelta(minutes=10)


class HelmRollbackInput(IOModel):
    target: Target
    release_name: str
    namespace: str
    revision: int = Field(ge=1)
    wait: bool = True
    timeout: timedelta = timedelta(minutes=10)


class HelmUninstallInput(IOModel):
    target: Target
    release_name: str
    namespace: str
    wait: bool = True
    timeout: timedelta = timedelta(minutes=10)


class HelmStatusInput(IOModel):
    target: Target
    release_name: str
    namespace: str


class HelmRevision(IOModel):
    revision: int
    status: str
    chart: str
    app_version: str = ""
    description: str = ""
    updated: str = ""


HelmAction = Literal["installed", "upgraded", "unchanged", "rolled-back", "uninstalled", "absent"]


class HelmResult(IOModel):
    release_name: str
    namespace: str
    action: HelmAction
    revision: int | None = None
    status: str | None = None
    chart: str | None = None
    repaired: str | None = Field(
        default=None, description="What was done to a stuck release first, e.g. 'rollback to 2'."
    )
    helm_version: str = ""


class HelmReleaseState(IOModel):
    release_name: str
    namespace: str
    exists: bool
    revision: int | None = None
    status: str | None = None
    chart: str | None = None
    history: list[HelmRevision] = Field(default_factory=list)

    @property
    def last_deployed_revision(self) -> int | None:
        good = [r.revision for r in self.history if r.status in ("deployed", "superseded")]
        return max(good) if good else None


# --- Preflight and capacity ------------------------------------------------------------------


class PreflightInput(IOModel):
    """Check the cluster before any change; `roles` limits the capacity plan to the roles this
    rollout will (re)create (default: both)."""

    spec: RolloutSpec
    roles: list[RoleName] = Field(default_factory=lambda: list(ROLES))


class CrdCheck(IOModel):
    name: str
    present: bool
    established: bool


class PodDemand(IOModel):
    """One pod the plan must place: its requests (quantity strings) and where it fits."""

    name: str
    role: RoleName
    group: int
    surge: bool = False
    requests: dict[str, str]
    node: str | None = None
    reason: str = ""


class NodePlan(IOModel):
    name: str
    eligible: bool
    reason: str = Field(default="", description="Why the node cannot take our pods, if not.")
    allocatable: dict[str, str]
    allocated: dict[str, str] = Field(description="By pods that stay (not ours being replaced).")
    free_before: dict[str, str]
    placed: list[str] = Field(default_factory=list)
    free_after: dict[str, str]


class CapacityPlan(IOModel):
    """Where every pod of the rollout (plus surge during an update) would go; `fits` or not."""

    fits: bool
    gpu_resource: str = "nvidia.com/gpu"
    gpus_asked: int
    gpus_available: int = Field(description="Free GPUs on nodes our pods may use.")
    asked: dict[str, str] = Field(description="Sum of requests of every planned pod.")
    available: dict[str, str] = Field(description="Free capacity of eligible nodes.")
    pods: list[PodDemand]
    nodes: list[NodePlan]
    nodes_not_shown: int = Field(
        default=0,
        description=(
            "Nodes left out of `nodes` (k8s/capacity.py `shortened`): a plan a rollout records "
            "lists the nodes it places pods on and the ones with the most GPUs free, not all."
        ),
    )
    max_surge: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Roles whose update must roll without surge (value 0: apply them with "
            "ApplyModelServiceInput.max_surge=0); a role not listed rolls as its strategy says."
        ),
    )
    notes: list[str] = Field(default_factory=list)
    cluster_uid: str = Field(
        default="",
        description=(
            "The UID of the kube-system namespace of the cluster it was planned on (\"\": not "
            "read); the rollout's later asks of its cluster workflow carry it."
        ),
    )
    waited_seconds: float = Field(
        default=0.0,
        description="How long the capacity hold waited for GPUs (budgets.capacityWait).",
    )

    def render(self) -> str:
        """The plan as a readable table, per node then per pod."""
        lines = [
            f"Capacity plan: {'fits' if self.fits else 'DOES NOT FIT'}: "
            f"{self.gpus_asked} GPUs asked, {self.gpus_available} available "
            f"({self.gpu_resource})",
            "",
            f"{'NODE':<28} {'ELIGIBLE':<9} {'GPU FREE':>8} {'CPU FREE':>9} "
            f"{'MEM FREE':>9}  PODS PLACED",
        ]
        for node in self.nodes:
            free = node.free_before
            lines.append(
                f"{node.name:<28} {'yes' if node.eligible else 'no':<9} "
                f"{free.get(self.gpu_resource, '0'):>8} {free.get('cpu', '0'):>9} "
                f"{free.get('memory', '0'):>9}  "
                + (", ".join(node.placed) if node.placed else (node.reason or "-"))
            )
        if self.nodes_not_shown:
            lines.append(
                f"... and {self.nodes_not_shown} more node(s), not shown"
            )
        lines += ["", f"{'POD':<52} {'GPU':>4} {'NODE':<28}"]
        for pod in self.pods:
            where = pod.node or f"UNPLACED: {pod.reason}"
            label = pod.name + (" (surge)" if pod.surge else "")
            lines.append(f"{label:<52} {pod.requests.get(self.gpu_resource, '0'):>4} {where}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(line.rstrip() for line in lines)


class PreflightReport(IOModel):
    server_version: str
    helm_version: str
    crds: list[CrdCheck] = Field(default_factory=list)
    capacity: CapacityPlan


# --- Failure evidence ------------------------------------------------------------------------


class EventEvidence(IOModel):
    object: str
    type: str = ""
    reason: str = ""
    message: str = ""
    count: int = 1


class ObjectEvidence(IOModel):
    ref: ObjectRef
    status: dict[str, Any] = Field(default_factory=dict)


class FailureEvidence(IOModel):
    """The single detail of a failure `ApplicationError`: what was seen, for a person to act on."""

    reason: str = Field(description="A FailureReason value (also the ApplicationError type).")
    message: str
    objects: list[ObjectEvidence] = Field(default_factory=list)
    events: list[EventEvidence] = Field(default_factory=list)
    log_lines: list[str] = Field(default_factory=list)
    matched_pattern: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_details(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_details(cls, details: Sequence[Any]) -> FailureEvidence | None:
        """Read it back from `ApplicationError.details` (None when there is none)."""
        for detail in details:
            if isinstance(detail, dict) and "reason" in detail and "message" in detail:
                return cls.model_validate(detail)
        return None
