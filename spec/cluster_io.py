"""What a target's rollout or teardown exchanges with its cluster's ClusterWorkflow.

Where it sits: between workflows/cluster.py (the one writer of a cluster's shared pieces and the
keeper of its GPU reservations) and the activities in activities/cluster.py that reach it by
update-with-start on behalf of a RolloutWorkflow or TeardownWorkflow. Plain data, no secrets: the
HF token never gets near these models.

A *shared piece* is something one cluster holds once for every target: the Gateway API and
inference-extension CRD bundles, the LWS controller release, the gateway provider releases. Its
`version` is what two targets must agree on to share it (see `piece_version`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spec.rollout import CrdBundle, HelmRelease, RoleName, RolloutSpec, Target

CLUSTER_ID_PREFIX = "cluster/"
# A ClusterWorkflow continues as new once its history holds this many events (or the server
# suggests it), so years of rollouts never make one history unbounded.
MAX_HISTORY_EVENTS = 5000

PieceKind = Literal["crds", "helm"]
CrdBundleName = Literal["gateway-api", "inference-extension"]
PieceAction = Literal["installed", "upgraded", "applied", "already current", "checked"]


# Which cluster an ask is of: its kube-system namespace's UID, which lives as long as the cluster
# (a cluster deleted and created again under the same `target.cluster` name has a new one). Empty
# in asks sent before it was read (histories recorded earlier replay as they were).
CLUSTER_UID = "The asker's cluster: the UID of its kube-system namespace."


def cluster_workflow_id(cluster: str, task_queue: str) -> str:
    """`cluster/<task queue>/<cluster>`: one writer per cluster per deployment of workers.

    The task queue is part of the ID because a ClusterWorkflow runs its helm and kubectl work on
    the workers of the queue it was started on; two deployments (say two test sessions, or a
    staging and a production worker fleet) aimed at one cluster name must not share a writer
    whose workers belong to the other."""
    return f"{CLUSTER_ID_PREFIX}{task_queue}/{cluster}"


class ClusterModel(BaseModel):
    """Base of every ask, answer and state: immutable, unknown fields ignored.

    Ignored, not rejected, as in every other payload model: during a rolling worker upgrade an
    older worker runs the ClusterWorkflow's tasks for asks a newer rollout sent (`at_once`,
    added later, then means "in order", which is correct if slower), and a newer build's
    continue-as-new state reaches an older one."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class SharedPiece(ClusterModel):
    """One cluster-wide piece a target's spec needs, with the version it needs."""

    key: str = Field(description="`crds/<bundle>` or `helm/<namespace>/<release>`.")
    kind: PieceKind
    step: str = Field(description="The rollout step name that reports it (`lws-controller`).")
    version: str
    bundle: CrdBundle | None = None
    bundle_name: CrdBundleName | None = None
    expected: list[str] = Field(default_factory=list)
    release: HelmRelease | None = None
    namespace: str | None = Field(default=None, description="A release's namespace.")

    @property
    def label(self) -> str:
        if self.release is not None:
            what = (
                "gateway provider release" if self.step.startswith("gateway-provider/")
                else "LWS controller release" if self.step == "lws-controller" else "release"
            )
            return f"{what} {self.namespace}/{self.release.release_name}"
        return f"the {self.bundle_name} CRDs"


def piece_version(release: HelmRelease) -> str:
    """What two targets must agree on to share a release: the chart (version, or path) and a
    digest of the values and values files they give it."""
    chart = release.chart
    where = chart.version or chart.path or f"{chart.repository}/{chart.name}"
    values = json.dumps(
        {"values": release.values, "files": release.values_files}, sort_keys=True, default=str
    )
    return f"{where} (values {hashlib.sha256(values.encode()).hexdigest()[:12]})"


def crd_piece(name: CrdBundleName, bundle: CrdBundle, expected: list[str]) -> SharedPiece:
    return SharedPiece(
        key=f"crds/{name}", kind="crds", step=f"crds/{name}",
        version=f"{bundle.version} from {bundle.source}", bundle=bundle, bundle_name=name,
        expected=expected,
    )


def release_piece(step: str, release: HelmRelease, namespace: str) -> SharedPiece:
    return SharedPiece(
        key=f"helm/{namespace}/{release.release_name}", kind="helm", step=step,
        version=piece_version(release), release=release, namespace=namespace,
    )


class EnsureAsk(ClusterModel):
    """Make the pieces current for `target_id` (in order, or `at_once`) and record it as their
    user."""

    ask_id: str = Field(description="Rollout workflow ID, run ID and phase: the update ID.")
    target_id: str
    target: Target = Field(description="How the cluster's workers reach the cluster.")
    pieces: list[SharedPiece]
    timeout: timedelta
    cluster_uid: str = Field(default="", description=CLUSTER_UID)
    at_once: bool = Field(
        default=False,
        description=(
            "The pieces do not depend on one another (the dependencies phase: CRD bundles and "
            "the LWS controller release): their operations run at the same time. Else one "
            "after another, in order (a gateway provider's releases: a later one may need an "
            "earlier one's CRDs)."
        ),
    )
    after: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Piece key -> keys of pieces of this ask it needs made current first. When given, "
            "the pieces run at the same time except where it says wait (the dependencies and "
            "gateway provider phases asked together: the provider's releases after the CRD "
            "bundles, the LWS release beside them). An older worker ignores it and, since such "
            "an ask is not `at_once`, runs the pieces in order."
        ),
    )


class PieceOutcome(ClusterModel):
    key: str
    step: str
    action: PieceAction
    changed: bool
    detail: str
    revision: int | None = None
    repaired: str | None = None
    started_at: datetime | None = Field(
        default=None,
        description=(
            "When the cluster workflow began this piece for the ask (after the pieces it waits "
            "for), and when it was current: the asker's journal shows each piece's own time, not "
            "the whole ask's. None for an answer that took no work of its own."
        ),
    )
    finished_at: datetime | None = None


class EnsureAnswer(ClusterModel):
    outcomes: list[PieceOutcome]


class StandingAsk(ClusterModel):
    """Would `ask` change nothing? Asked by query before the update (`now`: the asker's clock,
    as a query cannot read the workflow's)."""

    ask: EnsureAsk
    now: datetime


class Standing(ClusterModel):
    """The answer to an ensure ask that would change nothing (every piece at the asked version,
    the target already its user, checked over the same connection moments ago), else None; and
    whether an operation on one of its pieces, at the asked version, is under way (worth
    waiting for and asking again)."""

    answer: EnsureAnswer | None = None
    in_flight: bool = False


class ReleaseAsk(ClusterModel):
    """A target is being torn down: it no longer uses the pieces; remove the ones nobody else
    uses when asked (`include_*`), with their namespaces."""

    ask_id: str
    target_id: str
    target: Target
    pieces: list[SharedPiece]
    include_gateway_provider: bool = False
    include_dependencies: bool = False
    timeout: timedelta
    cluster_uid: str = Field(default="", description=CLUSTER_UID)


class ReleasedPiece(ClusterModel):
    key: str
    step: str
    action: Literal["removed", "kept", "absent"]
    detail: str


class ReleaseAnswer(ClusterModel):
    pieces: list[ReleasedPiece]


class PieceRecord(ClusterModel):
    """What the cluster workflow knows of a piece: its version and the targets that use it."""

    piece: SharedPiece
    users: list[str] = Field(default_factory=list)


# --- GPU reservations ----------------------------------------------------------------------------


class Reservation(ClusterModel):
    """GPUs (and the other requests) a rollout placed at preflight, node by node, held until it
    ends. `covers` names the LeaderWorkerSets (`namespace/name`) whose pods the reservation stands
    for: a planner ignores those pods and counts the reservation instead, so nothing is counted
    twice while the pods come up."""

    owner: str = Field(description="The rollout's workflow ID.")
    run_id: str
    target_id: str
    nodes: dict[str, dict[str, str]] = Field(description="node -> resource -> quantity")
    covers: list[str] = Field(default_factory=list)
    expires_at: datetime
    accepted_at: int = Field(default=0, description="The reservations' version it was held at.")


class ReservationsView(ClusterModel):
    """The reservations as of `version` (a counter bumped by every change)."""

    version: int
    reservations: list[Reservation]


class ReserveAsk(ClusterModel):
    """Hold `reservation` if nothing changed since `based_on` (compare-and-swap): a planner that
    saw an older view must plan again."""

    reservation: Reservation
    based_on: int
    cluster_uid: str = Field(default="", description=CLUSTER_UID)


class ReserveAnswer(ClusterModel):
    accepted: bool
    version: int
    detail: str = ""


class FreeAsk(ClusterModel):
    """End `owner`'s reservation (of run `run_id`, or any run): the rollout ended."""

    cluster: str
    owner: str
    run_id: str = ""
    why: str


class HoldCapacityInput(ClusterModel):
    """Plan the capacity of `roles` against the nodes, the pods and the other rollouts'
    reservations, and hold the plan for `owner` until it frees it or `ttl` passes."""

    spec: RolloutSpec
    roles: list[RoleName]
    owner: str
    run_id: str
    ttl: timedelta
    cluster_uid: str = Field(default="", description=CLUSTER_UID)


# The evidence key naming the step whose piece failed, when an ask of several pieces failed.
FAILED_STEP = "failedStep"
# The evidence key listing the steps whose pieces were made current, when an ask whose pieces ran
# at once failed (pieces run in order need none: those before the failed one were done).
DONE_STEPS = "doneSteps"


class AskError(ClusterModel):
    """Why an ask failed, as the cluster workflow recorded it: the deepest application error's
    type, sentence and structured details (the evidence a failure report shows)."""

    type: str
    message: str
    non_retryable: bool = False
    details: list[dict[str, Any]] = Field(default_factory=list)
    # The journal step of the piece whose operation failed.
    step: str | None = None
    # When the ask's pieces ran at once: the steps of those made current (None: they ran in
    # order, so those before `step` were done and those after it never ran).
    done: list[str] | None = None

    def evidence(self) -> list[dict[str, Any]]:
        """The details as an activity error's, the failed piece's step (and, for pieces run at
        once, the steps done) in the first mapping: the failure report's evidence;
        workflows/failures.py reads them back out."""
        if self.step is None:
            return self.details
        first, *rest = self.details or [{}]
        marks: dict[str, Any] = {FAILED_STEP: self.step}
        if self.done is not None:
            marks[DONE_STEPS] = list(self.done)
        return [{**first, **marks}, *rest]


AskState = Literal["running", "answered", "failed", "unknown"]


class AskStatus(ClusterModel):
    """Where an ask stands: `running` (accepted, its work under way), `answered` (with the
    answer), `failed` (with the error), `unknown` (this run never saw it: send it again)."""

    ask_id: str
    state: AskState
    ensured: EnsureAnswer | None = None
    released: ReleaseAnswer | None = None
    error: AskError | None = None

    @property
    def settled(self) -> bool:
        return self.state in ("answered", "failed")


class ClusterReads(ClusterModel):
    """The reads of several askers in one worker process, sent as one `reads` query: a
    workflow answers its queries one at a time, so fifty askers each polling on their own
    queued behind one another (activities/cluster_reads.py)."""

    standing: list[StandingAsk] = Field(default_factory=list)
    statuses: list[str] = Field(default_factory=list, description="ask IDs")


class ClusterReadAnswers(ClusterModel):
    """`ClusterReads` answered, each list in the order it was asked."""

    standing: list[Standing] = Field(default_factory=list)
    statuses: list[AskStatus] = Field(default_factory=list)


class ClusterRecords(ClusterModel):
    """One cluster's records: the users of its pieces and its GPU holds."""

    pieces: dict[str, PieceRecord] = Field(default_factory=dict)
    reservations: list[Reservation] = Field(default_factory=list)


class ClusterState(ClusterModel):
    """Everything a ClusterWorkflow carries through continue-as-new."""

    cluster: str
    uid: str = Field(default="", description="The cluster the records are of (see CLUSTER_UID).")
    aside: dict[str, ClusterRecords] = Field(
        default_factory=dict,
        description="Other clusters of this name by UID: their records, put aside.",
    )
    pieces: dict[str, PieceRecord] = Field(default_factory=dict)
    reservations: list[Reservation] = Field(default_factory=list)
    version: int = 0
    answered: dict[str, EnsureAnswer] = Field(
        default_factory=dict,
        description="Answers carried by runs before asks answered at once (read into `asks`).",
    )
    asks: dict[str, AskStatus] = Field(
        default_factory=dict,
        description="Recent asks' outcomes by ask ID, so an ask polled or sent again across "
        "continue-as-new reads its outcome, not run twice.",
    )


class ClusterInput(ClusterModel):
    cluster: str
    state: ClusterState | None = None
    max_history_events: int = MAX_HISTORY_EVENTS
    reservation_grace: timedelta = timedelta(minutes=5)
