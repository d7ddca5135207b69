"""Helm releases through the real helm v4 and v3 CLIs on clustersim: re-runs make no new
revision, rollback and uninstall are idempotent, and a release a killed helm left locked in
pending-upgrade or pending-install is repaired before the retry succeeds."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import helm
from helmcli import HELM_ENV
from helmcli import repair as helm_repair
from k8s.client import RETRY_ATTEMPTS
from spec.activity_io import (
    FailureEvidence,
    HelmReleaseInput,
    HelmRollbackInput,
    HelmStatusInput,
    HelmUninstallInput,
)
from spec.rollout import ChartRef, HelmRelease, Target
from tests.activities.conftest import REPO, SimCluster
from tests.activities.specs import environment

BINARIES = {"helm4": REPO / ".venv" / "bin" / "helm", "helm3": REPO / ".venv" / "bin" / "helm3"}
TIMEOUT = timedelta(seconds=60)

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    "values.yaml": "replicas: 1\nnodeSelector: {}\nmessage: hello\n",
    "templates/all.yaml": """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  message: {{ .Values.message | quote }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-app
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      nodeSelector: {{ toJson .Values.nodeSelector }}
      containers:
        - name: app
          image: registry.k8s.io/pause:3.9
""",
}
# A Deployment no node can take: `helm --wait` waits on it until killed.
NEVER_AVAILABLE = {"nodeSelector": {"llmd-rollout.test/no-such-node": "true"}}


@pytest.fixture(params=sorted(BINARIES))
def helm_binary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    binary = BINARIES[request.param]
    if not binary.is_file():
        pytest.skip(f"{binary} is missing: run scripts/install_tools.py")
    monkeypatch.setenv(HELM_ENV, str(binary))
    yield binary


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    for name, text in CHART.items():
        path = tmp_path / "probe" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "probe"


def release(chart: Path, name: str, **values: Any) -> HelmRelease:
    return HelmRelease(release_name=name, chart=ChartRef(path=str(chart)), values=values)


def target(cluster: SimCluster, binary: Path) -> Target:
    return cluster.target(f"helm-{binary.name}")


def history(binary: Path, cluster: SimCluster, name: str, namespace: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            str(binary),
            "history",
            name,
            "-n",
            namespace,
            "-o",
            "json",
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return json.loads(done.stdout) if done.returncode == 0 else []


def as_writer(env: ActivityEnvironment, workflow_id: str) -> ActivityEnvironment:
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id)
    return env


def kill_helm_mid_upgrade(
    binary: Path, cluster: SimCluster, chart: Path, name: str, namespace: str, tmp_path: Path
) -> None:
    """Start an upgrade that waits on a Deployment that never becomes available and SIGKILL
    helm once the release is marked pending: what a crashed worker leaves behind."""
    values = tmp_path / "never.json"
    values.write_text(json.dumps(NEVER_AVAILABLE))
    wait = "--wait=legacy" if binary.name == "helm" else "--wait"
    process = subprocess.Popen(
        [
            str(binary),
            "upgrade",
            "--install",
            name,
            str(chart),
            "-n",
            namespace,
            "--create-namespace",
            "--values",
            str(values),
            wait,
            "--timeout",
            "300s",
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(
            r["status"].startswith("pending-") for r in history(binary, cluster, name, namespace)
        ):
            assert time.monotonic() < deadline, "helm never marked the release pending"
            time.sleep(0.2)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def test_rerun_makes_no_new_revision_and_rollback_and_uninstall_are_idempotent(
    cluster: SimCluster, helm_binary: Path, chart: Path
) -> None:
    env = environment()
    where = target(cluster, helm_binary)
    first = await env.run(
        helm.helm_upgrade_install,
        HelmReleaseInput(target=where, release=release(chart, "app"), timeout=TIMEOUT),
    )
    assert (first.action, first.revision, first.status) == ("installed", 1, "deployed")
    assert first.helm_version.startswith("v4" if helm_binary.name == "helm" else "v3")
    again = await env.run(
        helm.helm_upgrade_install,
        HelmReleaseInput(target=where, release=release(chart, "app"), timeout=TIMEOUT),
    )
    assert (again.action, again.revision) == ("unchanged", 1)
    changed = await env.run(
        helm.helm_upgrade_install,
        HelmReleaseInput(
            target=where, release=release(chart, "app", message="bye"), timeout=TIMEOUT
        ),
    )
    assert (changed.action, changed.revision) == ("upgraded", 2)

    rollback = HelmRollbackInput(
        target=where, release_name="app", namespace=where.namespace, revision=1, timeout=TIMEOUT
    )
    back = await env.run(helm.helm_rollback, rollback)
    assert (back.action, back.revision, back.status) == ("rolled-back", 3, "deployed")
    assert (await env.run(helm.helm_rollback, rollback)).action == "unchanged"
    state = await env.run(
        helm.helm_release_status,
        HelmStatusInput(target=where, release_name="app", namespace=where.namespace),
    )
    assert [r.revision for r in state.history] == [1, 2, 3]

    uninstall = HelmUninstallInput(
        target=where, release_name="app", namespace=where.namespace, timeout=TIMEOUT
    )
    assert (await env.run(helm.helm_uninstall, uninstall)).action == "uninstalled"
    assert (await env.run(helm.helm_uninstall, uninstall)).action == "absent"


async def test_release_stuck_in_pending_upgrade_is_repaired_then_upgraded(
    cluster: SimCluster, helm_binary: Path, chart: Path, tmp_path: Path
) -> None:
    env = environment()
    where = target(cluster, helm_binary)
    await env.run(
        helm.helm_upgrade_install,
        HelmReleaseInput(target=where, release=release(chart, "stuck"), timeout=TIMEOUT),
    )
    kill_helm_mid_upgrade(helm_binary, cluster, chart, "stuck", where.namespace, tmp_path)
    assert (
        history(helm_binary, cluster, "stuck", where.namespace)[-1]["status"] == "pending-upgrade"
    )
    upgrade = HelmReleaseInput(
        target=where, release=release(chart, "stuck", message="v2"), timeout=TIMEOUT
    )
    # Another workflow cannot show the pending upgrade is abandoned: it leaves it alone.
    with pytest.raises(ApplicationError) as refused:
        await as_writer(environment(), "rollout/other/target").run(
            helm.helm_upgrade_install, upgrade
        )
    assert refused.value.type == helm.HELM_TRANSIENT and not refused.value.non_retryable
    assert "not repairing: stuck is pending-upgrade" in refused.value.message
    assert history(helm_binary, cluster, "stuck", where.namespace)[-1]["status"] == (
        "pending-upgrade"
    )
    # The workflow that wrote its last good revision is its only writer: it repairs it.
    result = await env.run(helm.helm_upgrade_install, upgrade)
    assert result.repaired is not None
    assert result.repaired.startswith(
        "rolled back to revision 1 (was pending-upgrade; abandoned: its last good revision was "
        f"written by {env.info.workflow_id}"
    ), result.repaired
    assert (result.action, result.status) == ("upgraded", "deployed")
    assert history(helm_binary, cluster, "stuck", where.namespace)[-1]["status"] == "deployed"


async def test_release_stuck_in_pending_install_is_uninstalled_then_installed(
    cluster: SimCluster, helm_binary: Path, chart: Path, tmp_path: Path
) -> None:
    where = target(cluster, helm_binary)
    kill_helm_mid_upgrade(helm_binary, cluster, chart, "fresh", where.namespace, tmp_path)
    install = HelmReleaseInput(target=where, release=release(chart, "fresh"), timeout=TIMEOUT)
    # A first attempt cannot tell a killed helm from a live one: a young pending install waits.
    with pytest.raises(ApplicationError) as refused:
        await environment().run(helm.helm_upgrade_install, install)
    assert "not repairing: fresh is pending-install" in refused.value.message
    assert history(helm_binary, cluster, "fresh", where.namespace)[-1]["status"] == (
        "pending-install"
    )
    # The retry of the attempt that started it (its heartbeat names the release) repairs it.
    retry = environment()
    retry.info = dataclasses.replace(
        retry.info, attempt=2, heartbeat_details=[{"writing": f"{where.namespace}/fresh"}]
    )
    result = await retry.run(helm.helm_upgrade_install, install)
    assert result.repaired == (
        "uninstalled (was pending-install; abandoned: an earlier attempt of this step started "
        "it and died)"
    )
    assert (result.action, result.revision, result.status) == ("installed", 1, "deployed")


async def test_a_pending_install_nobody_owns_is_repaired_once_old_enough(
    cluster: SimCluster, helm_binary: Path, chart: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = target(cluster, helm_binary)
    kill_helm_mid_upgrade(helm_binary, cluster, chart, "orphan", where.namespace, tmp_path)
    monkeypatch.setattr(helm_repair, "PENDING_REPAIR_AGE", timedelta(seconds=0))
    result = await environment().run(
        helm.helm_upgrade_install,
        HelmReleaseInput(target=where, release=release(chart, "orphan"), timeout=TIMEOUT),
    )
    assert result.repaired is not None
    assert result.repaired.startswith("uninstalled (was pending-install; abandoned: "
                                      "pending-install for "), result.repaired
    assert (result.action, result.status) == ("installed", "deployed")


async def test_a_broken_chart_fails_with_helm_failed(
    cluster: SimCluster, helm_binary: Path, tmp_path: Path
) -> None:
    where = target(cluster, helm_binary)
    missing = HelmRelease(release_name="broken", chart=ChartRef(path=str(tmp_path / "nothing")))
    with pytest.raises(ApplicationError) as raised:
        await environment().run(
            helm.helm_upgrade_install,
            HelmReleaseInput(target=where, release=missing, timeout=TIMEOUT),
        )
    assert raised.value.type == "HelmFailed" and raised.value.non_retryable


async def test_an_uninstall_the_api_server_refused_names_its_answer_and_is_retried(
    cluster: SimCluster, helm_binary: Path, chart: Path
) -> None:
    """Helm itself says only "failed to delete release: NAME" (the fault matrix's 503 cell
    ended so, with no reason a user could act on); its debug log has the API server's answer."""
    env = environment()
    where = target(cluster, helm_binary)
    name = "refused-delete"
    await env.run(
        helm.helm_upgrade_install,
        HelmReleaseInput(target=where, release=release(chart, name), timeout=TIMEOUT),
    )
    cluster.api_fault(
        "--error", "503", "--verb", "delete", "--count", "1",
        "--path", f"/namespaces/{where.namespace}/configmaps/{name}-config$",
    )
    uninstall = HelmUninstallInput(
        target=where, release_name=name, namespace=where.namespace, timeout=TIMEOUT
    )
    with pytest.raises(ApplicationError) as raised:
        await env.run(helm.helm_uninstall, uninstall)
    assert raised.value.type == "HelmTransientError" and not raised.value.non_retryable
    assert re.fullmatch(
        f"helm uninstall {name} failed: Error: failed to delete release: {name} \\| because: "
        r"\[clustersim injected fault \w+ \(503 ServiceUnavailable\)\]",
        raised.value.message,
    ), raised.value.message
    # The retry finishes what the refused delete left "uninstalling".
    assert (await env.run(helm.helm_uninstall, uninstall)).action == "uninstalled"
    assert history(helm_binary, cluster, name, where.namespace) == []


@pytest.mark.parametrize("driver", ["secret", "configmap"])
async def test_a_release_state_read_from_helms_records_equals_helm_history(
    cluster: SimCluster,
    helm_binary: Path,
    chart: Path,
    driver: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(helm.HELM_DRIVER_ENV, driver)
    env = environment()
    where = target(cluster, helm_binary)
    name = f"records-{driver}"
    for message in ("one", "two"):
        await env.run(
            helm.helm_upgrade_install,
            HelmReleaseInput(
                target=where, release=release(chart, name, message=message), timeout=TIMEOUT
            ),
        )
    runner = helm.HelmRunner()

    read = await helm.release_state(runner, where, name, where.namespace)
    told = await runner.release_state(where, name, where.namespace)

    assert read == told
    assert [(r.revision, r.status) for r in read.history] == [(1, "superseded"), (2, "deployed")]
    assert not (await helm.release_state(runner, where, "none", where.namespace)).exists


async def test_release_steps_run_no_helm_history(
    cluster: SimCluster, helm_binary: Path, chart: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`helm history` is a process of its own (about 60 ms of CPU); the records are one request."""
    wrapper = tmp_path / "helm-without-history"
    wrapper.write_text(
        f'#!/bin/sh\n[ "$1" = history ] && {{ echo "history run" >&2; exit 3; }}\n'
        f'exec {helm_binary} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv(HELM_ENV, str(wrapper))
    env = environment()
    where = target(cluster, helm_binary)
    installed = await env.run(
        helm.helm_upgrade_install,
        HelmReleaseInput(target=where, release=release(chart, "no-history"), timeout=TIMEOUT),
    )
    state = await env.run(
        helm.helm_release_status,
        HelmStatusInput(target=where, release_name="no-history", namespace=where.namespace),
    )
    assert (installed.action, state.revision, state.status) == ("installed", 1, "deployed")


async def test_a_release_state_the_api_server_keeps_refusing_fails_the_step_as_helm(
    cluster: SimCluster, chart: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading helm's records is part of the helm step: an API server that stays busy through
    the client's retries fails it as it fails helm (retried; HelmFailed if it stays so, with
    the API server's answer), not as an unreachable cluster."""
    monkeypatch.setenv(HELM_ENV, str(BINARIES["helm4"]))
    where = target(cluster, BINARIES["helm4"])
    cluster.api_fault(
        "--error", "503", "--verb", "list", "--count", str(RETRY_ATTEMPTS),
        "--path", f"/namespaces/{where.namespace}/secrets$",
    )
    with pytest.raises(ApplicationError) as raised:
        await environment().run(
            helm.helm_upgrade_install,
            HelmReleaseInput(target=where, release=release(chart, "busy-records"), timeout=TIMEOUT),
        )
    evidence = FailureEvidence.from_details(raised.value.details)
    assert raised.value.type == "HelmTransientError" and not raised.value.non_retryable
    assert evidence is not None and evidence.reason == "HelmFailed"
    assert "(503 ServiceUnavailable)" in raised.value.message, raised.value.message
