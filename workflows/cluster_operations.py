"""Making shared pieces current, for ClusterWorkflow: apply a piece's CRDs or upgrade its release,
and walk an ask's pieces in order or all at once.

Where it sits: `make_current` is called by workflows/cluster.py under the piece's lock, once per
operation however many targets wait on it (the decision to run it is the cluster workflow's; this
only does it and says what happened, in the words every waiting rollout's journal shows).
`in_order` and `at_once` run an ask's pieces through the cluster workflow's own per-piece step
and say, when one fails, which piece failed and which were done: an ask whose pieces do not
depend on one another (EnsureAsk.at_once: the dependencies phase's CRD bundles and LWS release)
runs them at the same time, which took a cold install's dependencies phase from the sum of their
operations to the longest of them. An ask may also say which pieces wait for which
(EnsureAsk.after): the dependencies and gateway provider phases asked together run the provider's
releases once the CRD bundles are current, beside the LWS release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from spec.activity_io import ApplyCrdsInput, HelmReleaseInput
    from spec.cluster_io import EnsureAnswer, PieceOutcome, SharedPiece
    from spec.rollout import Target
    from workflows import calls


async def make_current(
    piece: SharedPiece, target: Target, timeout: timedelta
) -> PieceOutcome:
    if piece.kind == "crds":
        assert piece.bundle is not None and piece.bundle_name is not None
        crds = await calls.execute(
            calls.APPLY_CRDS,
            ApplyCrdsInput(
                target=target, bundle=piece.bundle, bundle_name=piece.bundle_name,
                expected=piece.expected, timeout=timeout,
            ),
            budget=timeout, summary=f"apply the {piece.bundle_name} CRDs {piece.version}",
        )
        changed = crds.apply.changed
        return PieceOutcome(
            key=piece.key, step=piece.step,
            action="applied" if changed else "already current", changed=changed,
            detail=f"{len(crds.established)} CRDs established"
            + ("" if changed else ", already current"),
        )
    assert piece.release is not None
    chart = piece.release.chart.version or piece.release.chart.path or ""
    helm = await calls.execute(
        calls.HELM_UPGRADE_INSTALL,
        HelmReleaseInput(target=target, release=piece.release, timeout=timeout),
        budget=timeout,
        summary=f"helm upgrade --install {piece.release.release_name} {chart} (shared)",
    )
    changed = helm.action != "unchanged"
    action = helm.action if helm.action in ("installed", "upgraded") else "already current"
    detail = f"{action}, revision {helm.revision}" + (
        f" (repaired: {helm.repaired})" if helm.repaired else ""
    )
    workflow.logger.info("shared piece %s: %s", piece.key, detail)
    return PieceOutcome(
        key=piece.key, step=piece.step,
        action="installed" if helm.action == "installed"
        else "upgraded" if helm.action == "upgraded" else "already current",
        changed=changed, detail=detail, revision=helm.revision, repaired=helm.repaired,
    )


class PieceFailed(Exception):
    """An ensure ask's work failed at the piece of journal step `step`; `done`: when its pieces
    ran at once, the steps of those made current (None: they ran in order)."""

    def __init__(self, step: str, error: FailureError, done: list[str] | None = None) -> None:
        super().__init__(step)
        self.step = step
        self.error = error
        self.done = done


EnsurePiece = Callable[[SharedPiece], Awaitable[PieceOutcome]]


async def in_order(pieces: Sequence[SharedPiece], ensure: EnsurePiece) -> EnsureAnswer:
    """Each piece after the one before it; the first failure ends the ask."""
    outcomes = []
    for piece in pieces:
        try:
            outcomes.append(await ensure(piece))
        except FailureError as error:
            # The asker's report names this piece, not the first of the ask (the LWS
            # release's helm failure was reported at the Gateway API CRDs' step).
            raise PieceFailed(piece.step, error) from error
    return EnsureAnswer(outcomes=outcomes)


async def at_once(
    pieces: Sequence[SharedPiece], ensure: EnsurePiece,
    after: Mapping[str, Sequence[str]] | None = None,
) -> EnsureAnswer:
    """Every piece at the same time, except that a piece named in `after` starts once the
    pieces it names are current, and does not run if one of them failed. The ask ends when all
    have: a failure names the first piece (in the ask's order) that failed, and the steps of
    those made current."""
    waits = after or {}
    runs: dict[str, asyncio.Task[PieceOutcome]] = {}

    async def when_ready(piece: SharedPiece) -> PieceOutcome:
        for key in waits.get(piece.key, ()):
            if key in runs:
                try:
                    await runs[key]
                except BaseException:
                    raise _NotRun() from None
        return await ensure(piece)

    for piece in pieces:
        runs[piece.key] = asyncio.create_task(when_ready(piece))
    ended = await asyncio.gather(*runs.values(), return_exceptions=True)
    outcomes = [outcome for outcome in ended if isinstance(outcome, PieceOutcome)]
    if len(outcomes) == len(pieces):
        return EnsureAnswer(outcomes=outcomes)
    piece, error = next(
        (piece, outcome) for piece, outcome in zip(pieces, ended, strict=True)
        if isinstance(outcome, BaseException) and not isinstance(outcome, _NotRun)
    )
    if not isinstance(error, FailureError):
        raise error  # a bug, or the ask cancelled: not an outcome
    raise PieceFailed(piece.step, error, done=[outcome.step for outcome in outcomes]) from error


class _NotRun(Exception):
    """A piece left alone because a piece it waits for failed (that one is the ask's error)."""
