"""Saga compensations: how to undo each completed mutating step of a rollout.

Where it sits: RolloutWorkflow registers a Compensation right after a step that changed the
cluster succeeded (never before: an undo of something that did not happen could remove what an
earlier version installed), and on failure or abort runs them newest first. A compensation is
data, not a closure, so the progress query and the result can show what will be (and was) undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spec.activity_io import HelmReleaseState, HelmResult
from spec.rollout import HelmRelease

CompensationKind = Literal[
    "helm-rollback", "helm-uninstall", "restore-model-service", "delete-model-service", "keep"
]


@dataclass(frozen=True)
class Compensation:
    """One undo. `keep` records a change deliberately left in place (a shared dependency this
    rollout installed, which other tenants may already use), so the result still names it."""

    undoes: str
    kind: CompensationKind
    release: HelmRelease | None = None
    release_namespace: str | None = None
    revision: int | None = None
    snapshot_revision: str | None = None
    reason: str = ""

    @property
    def action(self) -> str:
        name = self.release.release_name if self.release is not None else ""
        if self.kind == "helm-rollback":
            return f"helm rollback {name} to revision {self.revision}"
        if self.kind == "helm-uninstall":
            return f"helm uninstall {name}"
        if self.kind == "restore-model-service":
            return f"restore model-service snapshot {self.snapshot_revision}"
        if self.kind == "delete-model-service":
            return "delete the model-service objects this rollout created"
        return f"keep {name or self.undoes}: {self.reason}"


class Saga:
    """The compensations registered so far, oldest first."""

    def __init__(self) -> None:
        self._registered: list[Compensation] = []

    def register(self, compensation: Compensation) -> None:
        self._registered.append(compensation)

    def has(self, undoes: str) -> bool:
        return any(c.undoes == undoes for c in self._registered)

    def newest_first(self) -> list[Compensation]:
        return list(reversed(self._registered))

    def __len__(self) -> int:
        return len(self._registered)


def helm_compensation(
    step: str,
    release: HelmRelease,
    namespace: str,
    before: HelmReleaseState,
    after: HelmResult,
    shared: bool,
) -> Compensation | None:
    """The undo of one helm upgrade, judged by revisions before and after."""
    if after.revision is not None and before.exists and before.revision == after.revision:
        return None
    if after.revision is None and after.action == "unchanged":
        return None
    previous = before.last_deployed_revision if before.exists else None
    if previous is not None:
        return Compensation(
            step, "helm-rollback", release, namespace, revision=previous
        )
    if shared:
        return Compensation(
            step, "keep", release, namespace,
            reason="a shared dependency this rollout installed; teardown removes it when asked",
        )
    return Compensation(step, "helm-uninstall", release, namespace)
