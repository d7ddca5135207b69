"""A cluster's GPU holds: reservations taken by compare-and-swap on a version counter. Pure: the
clock is passed in, nothing is logged here.

Where it sits: the state behind ClusterWorkflow's `reservations` query and its `reserve` and
`free` updates (workflows/cluster.py), carried through continue-as-new in ClusterState. The
planner (activities/capacity_hold.py) plans against a view and holds its plan by `reserve`; a
planner that read an older view, when a hold taken since uses one of its nodes, plans again. So
two rollouts never count the same GPUs. A hold ends when its owner frees it, or at its expiry if
the owner disappeared.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from spec.cluster_io import FreeAsk, Reservation, ReservationsView, ReserveAnswer, ReserveAsk

NOTHING_HELD = "nothing held"


class GpuHolds:
    """The reservations, and the version every change bumps."""

    def __init__(self, reservations: list[Reservation], version: int) -> None:
        self.reservations = list(reservations)
        self.version = version

    def view(self) -> ReservationsView:
        return ReservationsView(version=self.version, reservations=list(self.reservations))

    def reserve(self, ask: ReserveAsk) -> ReserveAnswer:
        held = ask.reservation
        # Compare-and-swap, node by node: only a hold taken since the planner's view on one of
        # the nodes this plan uses can make it wrong (a freed hold only adds room).
        newer = [
            r.owner for r in self.reservations
            if r.owner != held.owner and r.accepted_at > ask.based_on
            and set(r.nodes) & set(held.nodes)
        ]
        if newer:
            return ReserveAnswer(
                accepted=False, version=self.version,
                detail=f"{', '.join(newer)} reserved on the same nodes since version "
                f"{ask.based_on}: plan again",
            )
        self.reservations = [r for r in self.reservations if r.owner != held.owner]
        self.version += 1
        self.reservations.append(held.model_copy(update={"accepted_at": self.version}))
        return ReserveAnswer(accepted=True, version=self.version, detail="held")

    def free(self, ask: FreeAsk) -> ReserveAnswer:
        kept = [
            r for r in self.reservations
            if not (r.owner == ask.owner and (not ask.run_id or r.run_id == ask.run_id))
        ]
        freed = len(self.reservations) - len(kept)
        if freed:
            self.reservations = kept
            self.version += 1
        return ReserveAnswer(
            accepted=True, version=self.version,
            detail=f"freed ({ask.why})" if freed else NOTHING_HELD,
        )

    def expire(self, now: datetime) -> list[Reservation]:
        """End the holds whose expiry has come (their owners did not free them); those ended."""
        gone = [r for r in self.reservations if r.expires_at <= now]
        if gone:
            self.reservations = [r for r in self.reservations if r.expires_at > now]
            self.version += 1
        return gone

    def until_next_expiry(self, now: datetime) -> timedelta | None:
        if not self.reservations:
            return None
        soonest = min(r.expires_at for r in self.reservations)
        return max(timedelta(seconds=1), soonest - now)

    def replace(self, reservations: list[Reservation]) -> None:
        """Hold these instead (another cluster's, put aside before): a change like any other."""
        self.reservations = list(reservations)
        self.version += 1
