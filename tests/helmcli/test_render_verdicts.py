"""helm template verdicts are kept per chart content, values, release, namespace and helm binary
(helmcli/render.py): the same release checked again runs no helm, and any change to what helm
would judge runs it again. A helm that did not run leaves no verdict behind."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from helmcli import render
from helmcli.runner import HelmRun, HelmRunner, HelmUnusable
from spec.rollout import HelmRelease

CHART = Path(__file__).resolve().parents[2] / "charts" / "lws-demo"
HELM = str(Path(sys.executable).parent / "helm")


@pytest.fixture
def helm_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every helm command run, passed on to the real helm."""
    runs: list[list[str]] = []
    real = HelmRunner.run

    async def counted(self: HelmRunner, args: list[str], *rest: Any, **kw: Any) -> HelmRun:
        runs.append(list(args))
        return await real(self, args, *rest, **kw)

    monkeypatch.setattr(HelmRunner, "run", counted)
    monkeypatch.setenv("LLMD_HELM", HELM)
    monkeypatch.setattr(render, "_VERDICTS", type(render._VERDICTS)())
    return runs


def release(chart: Path, values: dict[str, Any] | None = None) -> HelmRelease:
    return HelmRelease.model_validate(
        {"releaseName": "lws", "chart": {"path": str(chart)}, "values": values or {}}
    )


async def test_the_same_release_is_judged_once_and_any_change_is_judged_again(
    helm_runs: list[list[str]], tmp_path: Path
) -> None:
    chart = tmp_path / "lws-demo"
    shutil.copytree(CHART, chart)
    first = await render.render_release("r", release(chart), "lws-system")
    again = await render.render_release("r", release(chart), "lws-system")
    assert first.outcome == again.outcome == "rendered"
    assert len(helm_runs) == 1

    await render.render_release("r", release(chart, {"extra": 1}), "lws-system")
    await render.render_release("r", release(chart), "other-namespace")
    (chart / "templates" / "more.yaml").write_text("# a chart changed without a version bump\n")
    await render.render_release("r", release(chart), "lws-system")
    assert len(helm_runs) == 4


async def test_a_helm_that_did_not_run_leaves_no_verdict(
    helm_runs: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unusable(self: HelmRunner, args: list[str], *rest: Any, **kw: Any) -> HelmRun:
        helm_runs.append(list(args))
        raise HelmUnusable("helm not found")

    monkeypatch.setattr(HelmRunner, "run", unusable)
    for _ in range(2):
        skipped = await render.render_release("r", release(CHART), "lws-system")
        assert skipped.outcome == "not-rendered"
    assert len(helm_runs) == 2
