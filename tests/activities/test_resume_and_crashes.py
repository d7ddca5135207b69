"""A retried wait resumes from its heartbeat (its budget is not reset), and container exits
without a known cause become a crash loop at the second one."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import serving, waits
from k8s import PodFailure, PodFailureCheck
from spec.activity_io import ModelLoadInput, ModelLoadProgress, WaitForObjectInput, WaitProgress
from tests.activities.builders import pod
from tests.activities.conftest import SimCluster
from tests.activities.specs import demo_spec, prepared


def resumed(details: object) -> ActivityEnvironment:
    """An environment whose activity is a retry of one that heartbeated `details`."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_details=[details], attempt=2)
    return env


async def test_a_retried_wait_keeps_the_first_attempts_budget(kube_api: SimCluster) -> None:
    spec = demo_spec(kube_api.kubeconfig, "resume")
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    previous = WaitProgress(started_at=long_ago, detail="Programmed=False").model_dump(mode="json")
    with pytest.raises(ApplicationError) as raised:
        await resumed(previous).run(
            waits.wait_for_gateway,
            WaitForObjectInput(
                target=spec.target, name="never-created", timeout=timedelta(minutes=2)
            ),
        )
    assert raised.value.type == "GatewayNotProgrammed"
    assert "not ready within 120s" in str(raised.value)


async def test_a_retried_model_load_keeps_the_first_attempts_budget(kube_api: SimCluster) -> None:
    spec = await prepared(kube_api.kubeconfig, "resume")
    spec = spec.model_copy(
        update={"budgets": spec.budgets.model_copy(update={"model_load": timedelta(minutes=1)})}
    )
    previous = ModelLoadProgress(
        started_at=datetime.now(UTC) - timedelta(minutes=2), role="decode"
    ).model_dump(mode="json")
    env = resumed(previous)
    with pytest.raises(ApplicationError) as raised:
        await env.run(serving.wait_for_model_load, ModelLoadInput(spec=spec, role="decode"))
    # Nothing was ever deployed: only the budget the first attempt spent can end this at once.
    assert raised.value.type == "ModelLoadBudgetExceeded"
    assert "within the model-load budget (60s" in str(raised.value)


async def test_two_unexplained_exits_make_a_crash_loop(kube_api: SimCluster) -> None:
    check = PodFailureCheck(kube_api.client(), "crashes")
    first = pod(name="decode-0", state={"terminated": {"exitCode": 1, "containerID": "c1"}})
    await check.check([first])
    assert check.last_finding is not None and not check.last_finding.decisive
    restarted = pod(
        name="decode-0",
        state={"running": {}},
        last_state={"terminated": {"exitCode": 1, "containerID": "c1"}},
        restarts=1,
    )
    await check.check([restarted])  # the same exit, seen again after the restart
    second = pod(
        name="decode-0-1",
        worker=1,
        state={"terminated": {"exitCode": 1, "containerID": "c2"}},
    )
    # These pods have no kubelet: no exit's log can be read, so two exits more are waited for
    # (a log might still name the crash) before it is only a CrashLoop.
    await check.check([restarted, second])
    third = pod(
        name="decode-0-2", worker=2, state={"terminated": {"exitCode": 1, "containerID": "c3"}}
    )
    await check.check([restarted, second, third])
    fourth = pod(
        name="decode-0-3", worker=3, state={"terminated": {"exitCode": 1, "containerID": "c4"}}
    )
    with pytest.raises(PodFailure) as raised:
        await check.check([restarted, second, third, fourth])
    assert raised.value.reason == "CrashLoop"
    assert "4 container exits" in str(raised.value)
