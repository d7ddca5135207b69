"""What the capacity planners of one worker process share: their turn, the holds they took or
sent, and the read of the holds in flight.

Where it sits: used by activities/capacity_hold.py, whose hold_capacity activity runs once per
rollout; fifty rollouts of one worker plan at once, and what they coordinate here, in this
process, saves the round trips to the cluster workflow (workflows/cluster.py) that they would
otherwise wait for one after another. None of it decides what is held: the cluster workflow's
compare-and-swap does, for planners of every process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
from collections.abc import AsyncIterator

from temporalio.client import WorkflowHandle

from activities.cluster import when_not_busy
from activities.heartbeat import heartbeating
from k8s.reservations import reserved_nodes
from spec.activity_io import CapacityPlan
from spec.cluster_io import Reservation, ReservationsView

# One holder at a time per cluster workflow in this worker process. Without it fifty rollouts
# of one worker hold at once, all but one lose the compare-and-swap, and plan again: N²/2 plans,
# each listing every node and pod, until the preflight budget runs out (bench/concurrency.py at
# N=50). The turn covers planning and sending a hold, not its answer (HeldHere); the
# compare-and-swap remains for planners in other worker processes.
_PLANNERS: dict[str, asyncio.Lock] = {}

# Holds this process took, per cluster workflow, kept for the planners waiting their turn.
HELD_HERE_KEPT = 256


@dataclasses.dataclass
class HeldHere:
    """The holds this worker process took on one cluster workflow, with the version each was
    accepted at, newest last (at most HELD_HERE_KEPT), and those it has sent and not yet heard
    back about.

    Why: a rollout plans before its holding turn, against the view it read then. The holders
    before it in this process take nodes meanwhile, and a plan that shares one is refused by the
    compare-and-swap (32 of 50 holds of a cold burst, bench/concurrency.py): a refused update,
    a query and a plan again. The holds taken or sent here since that view are known here: a
    plan that shares a node with one is made again around them before it is sent. The swap
    still checks it against the view, so a hold taken by another process since is still caught;
    a hold sent here and then refused only made the plans around it keep off nodes that were
    free."""

    held: collections.deque[tuple[int, Reservation]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=HELD_HERE_KEPT)
    )
    # The newest version among holds dropped from `held`: after it, this process cannot say.
    forgotten: int = -1
    sent: dict[int, Reservation] = dataclasses.field(default_factory=dict)
    _tokens: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    def since(self, version: int) -> tuple[list[Reservation], list[Reservation]] | None:
        """The holds taken here after `version`, and those sent and not yet answered; None
        when some taken may have been dropped."""
        if self.forgotten > version:
            return None
        taken = [reservation for accepted, reservation in self.held if accepted > version]
        return taken, list(self.sent.values())

    def add(self, version: int, reservation: Reservation) -> None:
        if len(self.held) == self.held.maxlen:
            self.forgotten = self.held[0][0]
        self.held.append((version, reservation))

    def send(self, reservation: Reservation) -> int:
        """A hold on its way; the token `answered` takes."""
        token = next(self._tokens)
        self.sent[token] = reservation
        return token

    def answered(self, token: int, version: int | None) -> None:
        """The hold sent under `token` was taken at `version`, or not (None: refused, or its
        answer is not known)."""
        reservation = self.sent.pop(token)
        if version is not None:
            self.add(version, reservation)


_HELD_HERE: dict[str, HeldHere] = {}


def held_here(workflow_id: str) -> HeldHere:
    """This process's HeldHere for the cluster workflow `workflow_id`."""
    return _HELD_HERE.setdefault(workflow_id, HeldHere())


def shares_a_node(plan: CapacityPlan, owner: str, holds: list[Reservation]) -> bool:
    """Whether another owner's hold in `holds` is on a node `plan` uses: what the cluster
    workflow's compare-and-swap refuses (workflows/gpu_holds.py)."""
    nodes = set(reserved_nodes(plan))
    return any(hold.owner != owner and nodes & set(hold.nodes) for hold in holds)


@contextlib.asynccontextmanager
async def one_planner_at_a_time(key: str) -> AsyncIterator[None]:
    """Hold this process's planning turn for `key`, heartbeating while others plan."""
    lock = _PLANNERS.setdefault(key, asyncio.Lock())
    acquiring = asyncio.ensure_future(lock.acquire())
    try:
        # Shielded: a cancelled activity must learn whether it got the turn, to give it back.
        await heartbeating(asyncio.shield(acquiring), "waiting for other capacity plans")
    except BaseException:
        if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
            lock.release()
        else:
            acquiring.cancel()
        raise
    try:
        yield
    finally:
        lock.release()


# The read of the holds in flight, per cluster workflow (and cluster UID), in this process.
_READINGS: dict[tuple[str, str], asyncio.Future[ReservationsView]] = {}


def reading_of_holds(
    handle: WorkflowHandle[object, object], cluster_uid: str
) -> asyncio.Future[ReservationsView]:
    """The reservations as the cluster workflow says, read once for every planner of this
    process that asks while the read is out. A workflow answers queries one at a time between
    its tasks: fifty planners' queries took up to 17 s at N=50 cold (bench/concurrency.py). A
    view read moments before it was asked for is as good as one read after: the hold is still
    swapped against its version."""
    key = (handle.id, cluster_uid)
    reading = _READINGS.get(key)
    if reading is None:
        reading = asyncio.ensure_future(
            when_not_busy(
                functools.partial(
                    handle.query, "reservations", cluster_uid, result_type=ReservationsView
                )
            )
        )
        _READINGS[key] = reading

        def read(done: asyncio.Future[ReservationsView]) -> None:
            if _READINGS.get(key) is done:
                del _READINGS[key]
            if not done.cancelled():
                done.exception()  # each planner that awaited it has it; none left unread

        reading.add_done_callback(read)
    return reading
