"""What other rollouts hold on a cluster, for `llmd-rollout plan`.

Where it sits: `plan` (cli/commands/plan.py) reads the cluster directly, but the GPUs another
rollout placed at preflight and holds until it ends are known only to the cluster's
ClusterWorkflow (workflows/gpu_holds.py). Counting only the pods on the nodes, `plan` said a
rollout fits (exit 7) where preflight would refuse it (exit 5) while another target's pods were
still coming up. This reads the holds with the `reservations` query, as the capacity hold itself
does (activities/capacity_hold.py), over the command's Temporal connection, and leaves out the
planned target's own (a rollout of it that still runs would be refused as busy anyway). `plan`
still needs nothing but the cluster: when Temporal cannot answer, it says the holds were not
counted and plans without them.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from cli.errors import CliError
from cli.session import open_session
from k8s.capacity import GPU
from k8s.quantity import Resources, format_quantity
from k8s.reservations import held_by_others, others_in_force
from spec.cluster_io import ReservationsView, cluster_workflow_id
from spec.rollout import RolloutSpec
from workflows.ids import rollout_workflow_id

# `plan` must not hang on a Temporal that does not answer; it plans without the holds then.
READ_SECONDS = 10.0


@dataclass(frozen=True)
class OtherHolds:
    """Per node, what other targets' rollouts hold (`covers`: the LWSes whose pods the holds
    stand for); `unread` says why they could not be read, when they could not."""

    held: dict[str, Resources] = field(default_factory=dict)
    covers: set[str] = field(default_factory=set)
    targets: list[str] = field(default_factory=list)
    unread: str | None = None

    @property
    def gpus(self) -> str:
        """The GPUs held, as a quantity ("8")."""
        return format_quantity(GPU, sum(node.get(GPU, 0) for node in self.held.values()))


async def read_other_holds(args: argparse.Namespace, spec: RolloutSpec) -> OtherHolds:
    """The holds of every target but `spec`'s on its cluster, as the cluster workflow of the
    task queue the flags name has them (none when no rollout ever ran there)."""
    try:
        return await asyncio.wait_for(_read(args, spec), READ_SECONDS)
    except CliError as error:
        return OtherHolds(unread=error.message)
    except TimeoutError:
        return OtherHolds(unread=f"Temporal did not answer within {READ_SECONDS:.0f}s")
    except (RPCError, WorkflowQueryFailedError, RuntimeError, OSError) as error:
        return OtherHolds(unread=f"the cluster workflow could not be read: {error}")


async def _read(args: argparse.Namespace, spec: RolloutSpec) -> OtherHolds:
    session = await open_session(args)
    handle = session.client.get_workflow_handle(
        cluster_workflow_id(spec.target.cluster, session.task_queue)
    )
    try:
        view = await handle.query("reservations", "", result_type=ReservationsView)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return OtherHolds()
        raise
    # A target's holds are its rollout's: the owner is the one workflow ID the target's rollouts
    # run under.
    owner, now = rollout_workflow_id(spec.target_id), datetime.now(UTC)
    held, covers = held_by_others(view.reservations, owner, now)
    targets = sorted({hold.target_id for hold in others_in_force(view.reservations, owner, now)})
    return OtherHolds(held, covers, targets)
