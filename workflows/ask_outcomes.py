"""The outcomes of a ClusterWorkflow's asks, kept for the askers to read and across runs.

Where it sits: inside workflows/cluster.py. An `ensure` or `release` update is answered at once
(the server lets only a few updates be in flight per workflow, and a helm install takes
minutes); its work runs as a workflow-side task whose outcome lands here, and the asking
activity polls the `ask_status` query until it does. The most recent outcomes travel through
continue-as-new, so an ask whose activity polls, or sends it again, after the run changed reads
its outcome rather than doing the work twice.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from spec.cluster_io import AskError, AskStatus, EnsureAnswer, ReleaseAnswer

# Outcomes kept; an ask evicted from here and sent again runs again (its work is idempotent:
# `helm upgrade --install` of the same version, a release of what is already released).
ASKS_KEPT = 200


class AskOutcomes:
    """Ask ID -> its settled status, oldest first, at most ASKS_KEPT."""

    def __init__(
        self, carried: dict[str, AskStatus], legacy: dict[str, EnsureAnswer] | None = None
    ) -> None:
        self._settled: dict[str, AskStatus] = {
            ask_id: AskStatus(ask_id=ask_id, state="answered", ensured=answer)
            for ask_id, answer in (legacy or {}).items()
        }
        self._settled.update(carried)

    def get(self, ask_id: str) -> AskStatus | None:
        return self._settled.get(ask_id)

    def answered(self, ask_id: str, answer: EnsureAnswer | ReleaseAnswer) -> None:
        if isinstance(answer, EnsureAnswer):
            self._keep(AskStatus(ask_id=ask_id, state="answered", ensured=answer))
        else:
            self._keep(AskStatus(ask_id=ask_id, state="answered", released=answer))

    def failed(self, ask_id: str, error: AskError) -> None:
        self._keep(AskStatus(ask_id=ask_id, state="failed", error=error))

    def snapshot(self) -> dict[str, AskStatus]:
        return dict(self._settled)

    def _keep(self, status: AskStatus) -> None:
        self._settled[status.ask_id] = status
        while len(self._settled) > ASKS_KEPT:
            del self._settled[next(iter(self._settled))]
