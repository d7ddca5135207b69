"""What a helm step registers as its undo, judged by the revisions before and after it."""

from __future__ import annotations

from spec.activity_io import HelmAction, HelmReleaseState, HelmResult, HelmRevision
from tests.workflows.specs import demo_spec
from workflows.saga import Compensation, Saga, helm_compensation

SPEC = demo_spec("saga")
INFRA = SPEC.infra


def state(revision: int | None) -> HelmReleaseState:
    if revision is None:
        return HelmReleaseState(release_name="infra", namespace="ns", exists=False)
    history = [
        HelmRevision(revision=r, status="deployed" if r == revision else "superseded", chart="c")
        for r in range(1, revision + 1)
    ]
    return HelmReleaseState(
        release_name="infra", namespace="ns", exists=True, revision=revision, history=history
    )


def result(action: HelmAction, revision: int | None) -> HelmResult:
    return HelmResult(release_name="infra", namespace="ns", action=action, revision=revision)


def test_an_upgrade_is_undone_by_a_rollback_to_the_revision_before() -> None:
    undo = helm_compensation("infra", INFRA, "ns", state(3), result("upgraded", 4), shared=False)
    assert undo is not None and undo.kind == "helm-rollback" and undo.revision == 3
    assert undo.action == "helm rollback infra-wide-ep to revision 3"


def test_a_retried_upgrade_that_reports_unchanged_is_still_undone() -> None:
    # The first attempt upgraded to 4, the worker died, the retry found nothing to change.
    undo = helm_compensation("infra", INFRA, "ns", state(3), result("unchanged", 4), shared=False)
    assert undo is not None and undo.kind == "helm-rollback" and undo.revision == 3


def test_an_unchanged_release_needs_no_undo() -> None:
    assert helm_compensation("infra", INFRA, "ns", state(3), result("unchanged", 3), False) is None


def test_a_fresh_install_is_uninstalled_but_a_shared_one_is_kept() -> None:
    own = helm_compensation("infra", INFRA, "ns", state(None), result("installed", 1), False)
    assert own is not None and own.kind == "helm-uninstall"
    shared = helm_compensation("lws", INFRA, "ns", state(None), result("installed", 1), True)
    assert shared is not None and shared.kind == "keep" and "shared" in shared.reason


def test_compensations_run_newest_first() -> None:
    saga = Saga()
    for name in ("lws", "infra", "model-service"):
        saga.register(Compensation(name, "keep"))
    assert [c.undoes for c in saga.newest_first()] == ["model-service", "infra", "lws"]
    assert saga.has("infra") and len(saga) == 3
