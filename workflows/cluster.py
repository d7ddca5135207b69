"""ClusterWorkflow: the one writer of a cluster's shared pieces and the keeper of its GPU holds.

Where it sits: started on demand (update-with-start, by activities/cluster.py) under
`cluster/<task queue>/<cluster>`, it lives as long as the cluster is served, continuing as new
when its history grows. Every RolloutWorkflow asks it, through an activity, to ensure the shared
pieces its spec needs (CRD bundles, LWS controller, gateway provider releases) and to hold the
capacity its preflight placed; every TeardownWorkflow tells it the target no longer uses them.

Why a workflow: several targets start at once on one cluster. Had each installed the cluster-wide
releases itself, two `helm upgrade --install lws` would race ("already exists"), and one
rollout's helm-lock repair would uninstall another's live install. Here:

- one helm or CRD operation per piece at a time (a lock per piece); an ask for a version that an
  operation in flight is already installing joins it (one install, the other asker reads
  "already current"); an ask for a version other than the one another live target uses is refused
  (policy in workflows/shared_pieces.py);
- the workflow records which targets use each piece, so a teardown removes a piece (and its
  namespace) only when it asks to and no other target uses it;
- GPU reservations are held by compare-and-swap on a version counter (workflows/gpu_holds.py): a
  planner that read an older view plans again, so two rollouts never count the same GPUs. A
  reservation ends when its owner frees it, or at its expiry if the owner disappeared;
- the records are of one cluster, known by its kube-system UID (workflows/cluster_identity.py):
  an ask of another cluster of the same name (created again, or a second one) puts them aside
  and takes that cluster's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from spec.ask_failures import ask_error
    from spec.cluster_io import (
        AskStatus,
        ClusterInput,
        ClusterReadAnswers,
        ClusterReads,
        ClusterRecords,
        ClusterState,
        EnsureAnswer,
        EnsureAsk,
        FreeAsk,
        PieceOutcome,
        ReleaseAnswer,
        ReleaseAsk,
        ReleasedPiece,
        ReservationsView,
        ReserveAnswer,
        ReserveAsk,
        SharedPiece,
        Standing,
        StandingAsk,
    )
    from spec.reasons import FailureReason
    from workflows.ask_outcomes import AskOutcomes
    from workflows.cluster_identity import (
        busy_refusal,
        meeting,
        of_another,
        switched,
        switching,
    )
    from workflows.cluster_operations import PieceFailed, at_once, in_order, make_current
    from workflows.cluster_removal import delete_namespace, remove_piece
    from workflows.gpu_holds import NOTHING_HELD, GpuHolds
    from workflows.shared_pieces import (
        Verified,
        conflict,
        connection,
        fresh,
        standing,
        with_user,
        without_user,
    )

SHARED_PIECE_CONFLICT = "SharedPieceConflict"
CLUSTER_DRAINING = "ClusterWorkflowDraining"
# Failures of an ask's work that are final: a refusal, or an operation's named failure (its
# activity already retried). Anything else recorded is final too (see spec/ask_failures.py).
FINAL_TYPES = frozenset({SHARED_PIECE_CONFLICT, *(reason.value for reason in FailureReason)})


@dataclass
class _InFlight:
    """The operation running for one piece: its version, who asked first, its outcome."""

    version: str
    asker: str
    task: asyncio.Task[PieceOutcome]
    joined: list[str]


@workflow.defn(name="ClusterWorkflow")
class ClusterWorkflow:
    @workflow.init
    def __init__(self, start: ClusterInput) -> None:
        self._state = start.state or ClusterState(cluster=start.cluster)
        self._pieces = dict(self._state.pieces)
        self._holds = GpuHolds(self._state.reservations, self._state.version)
        self._uid = self._state.uid
        self._aside = dict(self._state.aside)
        self._asks = AskOutcomes(self._state.asks, self._state.answered)
        # Ask ID -> the task doing its work; its outcome goes to `_asks` when it settles.
        self._running: dict[str, asyncio.Task[None]] = {}
        self._crashed: BaseException | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._in_flight: dict[str, _InFlight] = {}
        self._verified: dict[str, Verified] = {}
        self._draining = False
        self._seen_version = self._holds.version  # the holds' version the run loop last saw

    @workflow.run
    async def run(self, start: ClusterInput) -> None:
        while not self._history_full(start):
            timeout = self._holds.until_next_expiry(workflow.now())
            # A timeout is the next reservation's expiry coming due; any change to the holds
            # (taken, freed, another cluster's put in) may have moved it, so it wakes the loop.
            self._seen_version = self._holds.version
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._holds.version != self._seen_version
                    or self._history_full(start) or self._crashed is not None,
                    timeout=timeout,
                )
            self._raise_crash()
            self._expire()
        # New asks are turned away while the running ones finish (handlers answer at once; the
        # asks' work runs in tasks); their activities send again and reach the next run, which
        # carries everything this one knows, outcomes included.
        self._draining = True
        await workflow.wait_condition(
            lambda: not self._running and workflow.all_handlers_finished()
        )
        self._raise_crash()
        workflow.continue_as_new(
            ClusterInput(
                cluster=start.cluster,
                state=self._snapshot(),
                max_history_events=start.max_history_events,
            ),
            # The longer task deadline it was started with (activities/cluster.py) is kept.
            task_timeout=workflow.info().task_timeout,
        )

    # --- shared pieces --------------------------------------------------------------------

    # --- asks: answered at once, their work in a task, its outcome read by `ask_status` --------

    @workflow.update
    def ensure(self, ask: EnsureAsk) -> AskStatus:
        """Accept the ask and start its work; the asker polls `ask_status` for the outcome."""
        self._meet(ask.cluster_uid)
        return self._accept(ask.ask_id, lambda: self._ensure_all(ask))

    @workflow.update
    def release(self, ask: ReleaseAsk) -> AskStatus:
        """Accept the teardown's ask and start its work (see `_release_all`)."""
        self._meet(ask.cluster_uid)
        return self._accept(ask.ask_id, lambda: self._release_all(ask))

    @workflow.query
    def standing(self, query: StandingAsk) -> Standing:
        """Whether an ensure ask would change nothing, read without an update (a warm burst of
        rollouts met the server's limit of updates in flight on one workflow)."""
        if self.ask_status(query.ask.ask_id).state != "unknown":
            # Sent before (an activity retried after its worker died): its own recorded
            # outcome ("installed", a failure) is its answer, read through the update.
            return Standing()
        if of_another(self._uid, query.ask.cluster_uid):
            return Standing()  # the update meets the asker's cluster first
        in_flight = {key: running.version for key, running in self._in_flight.items()}
        return standing(self._pieces, in_flight, self._verified, query.ask, query.now)

    @workflow.query
    def ask_status(self, ask_id: str) -> AskStatus:
        if ask_id in self._running:
            return AskStatus(ask_id=ask_id, state="running")
        return self._asks.get(ask_id) or AskStatus(ask_id=ask_id, state="unknown")

    @workflow.query
    def reads(self, reads: ClusterReads) -> ClusterReadAnswers:
        """`standing` and `ask_status` for the waiting askers of one worker, in one query."""
        return ClusterReadAnswers(
            standing=[self.standing(query) for query in reads.standing],
            statuses=[self.ask_status(ask_id) for ask_id in reads.statuses],
        )

    def _accept(
        self, ask_id: str, work: Callable[[], Awaitable[EnsureAnswer | ReleaseAnswer]]
    ) -> AskStatus:
        known = self.ask_status(ask_id)
        if known.state != "unknown":
            # Sent again (an activity retried after a lost answer): the same ask, not new work.
            return known
        self._running[ask_id] = asyncio.create_task(self._settle(ask_id, work()))
        return AskStatus(ask_id=ask_id, state="running")

    async def _settle(self, ask_id: str, work: Awaitable[EnsureAnswer | ReleaseAnswer]) -> None:
        try:
            self._asks.answered(ask_id, await work)
        except PieceFailed as failed:
            self._asks.failed(ask_id, ask_error(
                failed.error, final_types=FINAL_TYPES, step=failed.step, done=failed.done
            ))
        except FailureError as error:
            self._asks.failed(ask_id, ask_error(error, final_types=FINAL_TYPES))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # A bug, not an outcome: fail the workflow task (from `run`) until a fixed worker
            # replays it, as Temporal does with any workflow code error.
            self._crashed = error
        finally:
            del self._running[ask_id]

    def _raise_crash(self) -> None:
        if self._crashed is not None:
            raise self._crashed

    async def _ensure_all(self, ask: EnsureAsk) -> EnsureAnswer:
        async def ensure(piece: SharedPiece) -> PieceOutcome:
            started = workflow.now()
            outcome = await self._ensure_piece(piece, ask)
            return outcome.model_copy(
                update={"started_at": started, "finished_at": workflow.now()}
            )

        if ask.at_once or ask.after:
            return await at_once(ask.pieces, ensure, ask.after)
        return await in_order(ask.pieces, ensure)

    @ensure.validator
    def _validate_ensure(self, ask: EnsureAsk) -> None:
        if self.ask_status(ask.ask_id).state != "unknown":
            return  # already accepted: sending it again reads where it stands
        self._refuse_when_draining()
        if self._check_cluster(ask.cluster_uid) == "switch":
            return  # the records in the way are another cluster's: checked once switched
        for piece in ask.pieces:
            refusal = conflict(self._pieces, piece, ask.target_id)
            if refusal is not None:
                raise ApplicationError(refusal, type=SHARED_PIECE_CONFLICT, non_retryable=True)

    async def _ensure_piece(self, piece: SharedPiece, ask: EnsureAsk) -> PieceOutcome:
        running = self._in_flight.get(piece.key)
        if running is not None and running.version == piece.version:
            # Same piece, same version, already being made current: wait for that operation.
            running.joined.append(ask.target_id)
            outcome = await asyncio.shield(running.task)
            self._pieces[piece.key] = with_user(self._pieces, piece, ask.target_id)
            return outcome.model_copy(
                update={
                    "action": "already current", "changed": False,
                    "detail": f"already current: made current for {running.asker} "
                    f"({outcome.detail})",
                }
            )
        recent = fresh(self._verified.get(piece.key), piece, ask.target, workflow.now())
        if recent is not None:
            self._pieces[piece.key] = with_user(self._pieces, piece, ask.target_id)
            return recent
        async with self._locks.setdefault(piece.key, asyncio.Lock()):
            # Checked again: another target may have taken the piece while this one waited.
            refusal = conflict(self._pieces, piece, ask.target_id)
            if refusal is not None:
                raise ApplicationError(refusal, type=SHARED_PIECE_CONFLICT, non_retryable=True)
            task = asyncio.create_task(make_current(piece, ask.target, ask.timeout))
            self._in_flight[piece.key] = _InFlight(piece.version, ask.target_id, task, [])
            try:
                outcome = await asyncio.shield(task)
            finally:
                del self._in_flight[piece.key]
            self._verified[piece.key] = Verified(
                piece.version, connection(ask.target), workflow.now(), ask.target_id
            )
            self._pieces[piece.key] = with_user(self._pieces, piece, ask.target_id)
            return outcome

    async def _release_all(self, ask: ReleaseAsk) -> ReleaseAnswer:
        """`ask.target_id` no longer uses its pieces; remove, newest first, those it asks to
        remove that nobody else uses, then their namespaces once no kept piece lives there."""
        outcomes: list[ReleasedPiece] = []
        namespaces: dict[str, bool] = {}
        for piece in reversed(ask.pieces):
            async with self._locks.setdefault(piece.key, asyncio.Lock()):
                outcome = await self._release_piece(piece, ask)
            outcomes.append(outcome)
            if piece.namespace is not None and piece.namespace != ask.target.namespace:
                keep = namespaces.get(piece.namespace, False)
                namespaces[piece.namespace] = keep or outcome.action == "kept"
        for namespace, keep in namespaces.items():
            users = [
                r.piece.key for r in self._pieces.values()
                if r.piece.namespace == namespace and r.users
            ]
            if keep or users or not self._removing_any(ask):
                continue
            outcomes.append(await delete_namespace(ask.target, namespace, ask.timeout))
        return ReleaseAnswer(pieces=outcomes)

    @release.validator
    def _validate_release(self, ask: ReleaseAsk) -> None:
        if self.ask_status(ask.ask_id).state == "unknown":
            self._refuse_when_draining()
            self._check_cluster(ask.cluster_uid)

    def _removing_any(self, ask: ReleaseAsk) -> bool:
        return ask.include_dependencies or ask.include_gateway_provider

    async def _release_piece(self, piece: SharedPiece, ask: ReleaseAsk) -> ReleasedPiece:
        record = self._pieces.get(piece.key)
        if record is not None:
            record = without_user(record, ask.target_id)
            self._pieces[piece.key] = record
        others = [] if record is None else record.users
        asked = (
            ask.include_gateway_provider if piece.step.startswith("gateway-provider/")
            else ask.include_dependencies
        )
        if others:
            return ReleasedPiece(
                key=piece.key, step=piece.step, action="kept",
                detail=f"{piece.label} kept: still used by " + ", ".join(others),
            )
        if not asked:
            flag = (
                "--include-gateway-provider" if piece.step.startswith("gateway-provider/")
                else "--include-dependencies"
            )
            return ReleasedPiece(
                key=piece.key, step=piece.step, action="kept",
                detail=f"{piece.label} kept: cluster-wide, removed only when asked ({flag})",
            )
        outcome = await remove_piece(piece, ask.target, ask.timeout)
        self._pieces.pop(piece.key, None)
        self._verified.pop(piece.key, None)
        return outcome

    @workflow.query
    def operations(self) -> dict[str, list[str]]:
        """Piece key -> the targets waiting on its operation now (the first one started it)."""
        return {key: [op.asker, *op.joined] for key, op in self._in_flight.items()}

    @workflow.query
    def users(self) -> dict[str, list[str]]:
        """Piece key -> the targets that use it."""
        return {key: list(record.users) for key, record in self._pieces.items()}

    # --- GPU reservations -----------------------------------------------------------------

    @workflow.query
    def reservations(self, cluster_uid: str = "") -> ReservationsView:
        """The holds on the cluster of `cluster_uid` (its own, when the records are another's)."""
        if of_another(self._uid, cluster_uid):
            aside = self._aside.get(cluster_uid)
            held = list(aside.reservations) if aside is not None else []
            return ReservationsView(version=self._holds.version, reservations=held)
        return self._holds.view()

    @workflow.update
    def reserve(self, ask: ReserveAsk) -> ReserveAnswer:
        self._meet(ask.cluster_uid)
        return self._holds.reserve(ask)

    @reserve.validator
    def _validate_reserve(self, ask: ReserveAsk) -> None:
        self._refuse_when_draining()
        self._check_cluster(ask.cluster_uid)

    @workflow.update
    def free(self, ask: FreeAsk) -> ReserveAnswer:
        answer = self._holds.free(ask)
        if answer.detail != NOTHING_HELD:
            workflow.logger.info("freed the reservation of %s: %s", ask.owner, ask.why)
        return answer

    @free.validator
    def _validate_free(self, ask: FreeAsk) -> None:
        self._refuse_when_draining()

    def _expire(self) -> None:
        for gone in self._holds.expire(workflow.now()):
            workflow.logger.warning(
                "reservation of %s expired: its owner did not free it", gone.owner
            )

    # --- which cluster the records are of (workflows/cluster_identity.py) -----------------------

    def _check_cluster(self, uid: str) -> str:
        """In a validator: an ask of another cluster waits (retryable) while operations on the
        records' cluster run; else say what meeting it will make."""
        met = meeting(self._uid, uid, bool(self._running or self._in_flight))
        if met == "busy":  # the asking activity sends it again
            raise ApplicationError(
                busy_refusal(self._state.cluster, self._uid, uid), type=CLUSTER_DRAINING
            )
        return met

    def _meet(self, uid: str) -> None:
        """In a handler (its validator passed): adopt the records, or switch to `uid`'s."""
        met = meeting(self._uid, uid, bool(self._running or self._in_flight))
        if met == "switch":
            current = ClusterRecords(pieces=self._pieces, reservations=self._holds.reservations)
            workflow.logger.warning(switching(
                self._state.cluster, self._uid, uid,
                sum(len(record.users) for record in self._pieces.values()),
                len(current.reservations),
            ))
            taken, self._aside = switched(self._aside, self._uid, current, uid)
            self._pieces, self._verified = dict(taken.pieces), {}
            self._holds.replace(taken.reservations)
            self._expire()  # they are not expired while put aside (planners skip them)
        if met in ("adopt", "switch"):
            self._uid = uid

    # --- bookkeeping ----------------------------------------------------------------------

    def _refuse_when_draining(self) -> None:
        if self._draining:
            # Retryable: the asking activity tries again and reaches the next run.
            raise ApplicationError(
                "the cluster workflow is continuing as new; ask again", type=CLUSTER_DRAINING
            )

    def _history_full(self, start: ClusterInput) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= start.max_history_events
            or info.is_continue_as_new_suggested()
        )

    def _snapshot(self) -> ClusterState:
        return ClusterState(
            cluster=self._state.cluster,
            uid=self._uid,
            aside=self._aside,
            pieces=self._pieces,
            reservations=self._holds.reservations,
            version=self._holds.version,
            asks=self._asks.snapshot(),
        )
