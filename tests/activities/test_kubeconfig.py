"""A kubeconfig that cannot work is a named, non-retryable failure, not a transient error that
Temporal retries for the whole budget: missing file, malformed file, unknown context, no
in-cluster environment. The message names the kubeconfig and the context and says what to fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.config.config_exception import ConfigException
from temporalio.exceptions import ApplicationError

from activities import kube, waits
from k8s import client as client_module
from k8s.client import KubeClient, KubeConfigError
from spec.activity_io import FailureEvidence, SnapshotLookupInput, WaitForObjectInput
from spec.reasons import FailureReason
from spec.rollout import Target
from tests.activities.specs import environment
from tests.simcluster import SimCluster

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: sim
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: admin
  user: {token: not-a-secret}
contexts:
- name: sim-admin
  context: {cluster: sim, user: admin}
current-context: sim-admin
"""


def missing(tmp_path: Path) -> Target:
    path = tmp_path / "absent" / "kubeconfig"
    return Target(cluster="c", namespace="ns", kubeconfig=str(path))


def malformed(tmp_path: Path) -> Target:
    path = tmp_path / "kubeconfig"
    path.write_text("clusters: [ {name: sim, cluster: {server: }\n")
    return Target(cluster="c", namespace="ns", kubeconfig=str(path))


def not_a_kubeconfig(tmp_path: Path) -> Target:
    path = tmp_path / "kubeconfig"
    path.write_text("- just\n- a list\n")
    return Target(cluster="c", namespace="ns", kubeconfig=str(path))


def unknown_context(tmp_path: Path) -> Target:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return Target(cluster="c", namespace="ns", kubeconfig=str(path), context="prod-admin")


CASES: dict[str, tuple[Callable[[Path], Target], str]] = {
    "missing-file": (missing, "no such file"),
    "malformed-yaml": (malformed, "not valid YAML"),
    "not-a-kubeconfig": (not_a_kubeconfig, "not a kubeconfig"),
    "unknown-context": (unknown_context, "contexts in it: sim-admin"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_kubeconfig_problem_fails_at_once_naming_the_file_and_context(
    case: str, tmp_path: Path
) -> None:
    make, hint = CASES[case]
    target = make(tmp_path)
    calls: list[tuple[Any, Any]] = [
        (kube.read_last_known_good, SnapshotLookupInput(target=target, rollout="wide-ep")),
        (waits.wait_for_deployment, WaitForObjectInput(target=target, name="epp")),
    ]
    for activity_fn, request in calls:
        with pytest.raises(ApplicationError) as raised:
            await environment().run(activity_fn, request)
        error = raised.value
        assert error.type == FailureReason.KUBECONFIG_INVALID.value == "KubeconfigInvalid"
        assert error.non_retryable
        message = str(error)
        assert target.kubeconfig is not None and target.kubeconfig in message
        assert hint in message
        assert "target.kubeconfig" in message and "retrying cannot help" in message
        if target.context:
            assert repr(target.context) in message
        evidence = FailureEvidence.from_details(error.details)
        assert evidence is not None and evidence.reason == "KubeconfigInvalid"
        assert evidence.data["kubeconfig"] == target.kubeconfig
        assert evidence.data["context"] == target.context
        assert "not-a-secret" not in message + repr(error.details)


async def test_in_cluster_outside_a_pod_is_a_kubeconfig_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    target = Target(cluster="c", namespace="ns", in_cluster=True)
    with pytest.raises(ApplicationError) as raised:
        await environment().run(
            kube.read_last_known_good, SnapshotLookupInput(target=target, rollout="wide-ep")
        )
    assert raised.value.type == "KubeconfigInvalid" and raised.value.non_retryable
    assert "in-cluster" in str(raised.value) and "target.kubeconfig" in str(raised.value)


def test_the_default_kubeconfig_is_named_by_its_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside activities (the CLI) it is still the loader's ConfigException, now worded."""
    path = tmp_path / "nowhere"
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(ConfigException) as raised:
        KubeClient.for_target(Target(cluster="c", namespace="ns"))
    assert isinstance(raised.value, KubeConfigError)
    assert f"$KUBECONFIG={path}" in str(raised.value)


def test_a_kubeconfig_is_read_once_and_again_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each activity builds its own client; the file is parsed once per version of it, and a
    rewritten file (a cluster recreated behind the same path) is read again."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    target = Target(cluster="c", namespace="ns", kubeconfig=str(path))
    loads: list[dict[str, Any]] = []
    load = client_module.k8s_config.load_kube_config

    def counting(**kwargs: Any) -> None:
        loads.append(kwargs)
        load(**kwargs)

    monkeypatch.setattr(client_module.k8s_config, "load_kube_config", counting)
    clients = [KubeClient.for_target(target) for _ in range(3)]
    path.write_text(KUBECONFIG.replace("127.0.0.1:1", "127.0.0.1:6443"))
    clients.append(KubeClient.for_target(target))
    try:
        assert [c.host for c in clients] == ["https://127.0.0.1:1"] * 3 + ["https://127.0.0.1:6443"]
        assert len(loads) == 2
    finally:
        for client in clients:
            client.close()


def test_clients_of_one_kubeconfig_share_their_connections(
    kube_api: SimCluster, tmp_path: Path
) -> None:
    """Every activity builds a client; they share one pool of connections to the API server, so
    the second activity's call neither opens a connection nor shakes hands again, and closing
    one activity's client leaves the others' connections open."""
    path = tmp_path / "kubeconfig"
    path.write_text(kube_api.kubeconfig.read_text())
    target = Target(cluster="c", namespace="ns", kubeconfig=str(path))
    first = KubeClient.for_target(target)
    first.server_version()
    first.close()
    second = KubeClient.for_target(target)
    second.server_version()
    pool: Any = second.api.rest_client.pool_manager.connection_from_url(second.host)
    assert second.api is first.api
    assert pool.num_connections == 1


def test_a_rewritten_kubeconfig_retires_the_old_versions_connections(
    kube_api: SimCluster, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(kube_api.kubeconfig.read_text())
    target = Target(cluster="c", namespace="ns", kubeconfig=str(path))
    old = KubeClient.for_target(target)
    old.server_version()
    manager: Any = old.api.rest_client.pool_manager
    assert len(manager.pools) == 1
    path.write_text(kube_api.kubeconfig.read_text() + "\n")
    new = KubeClient.for_target(target)
    new.server_version()
    assert new.api is not old.api
    assert len(manager.pools) == 0


def test_only_the_most_recently_used_kubeconfigs_keep_their_connections(
    kube_api: SimCluster, tmp_path: Path
) -> None:
    """A worker that has served many clusters (a kubeconfig per path) keeps the clients of the
    last SHARED_CLIENTS only; the least recently used one's idle connections are closed."""
    targets = []
    for index in range(client_module.SHARED_CLIENTS + 1):
        path = tmp_path / f"kubeconfig-{index}"
        path.write_text(kube_api.kubeconfig.read_text())
        targets.append(Target(cluster=f"c{index}", namespace="ns", kubeconfig=str(path)))
    first, second = (KubeClient.for_target(t) for t in targets[:2])
    for client in (first, second):
        client.server_version()
    for target in targets[2:-1]:
        KubeClient.for_target(target)
    KubeClient.for_target(targets[0])  # used again: now the most recently used
    KubeClient.for_target(targets[-1])  # one more than the limit
    assert len(first.api.rest_client.pool_manager.pools) == 1
    assert len(second.api.rest_client.pool_manager.pools) == 0
    assert KubeClient.for_target(targets[1]).api is not second.api
