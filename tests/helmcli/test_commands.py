"""The helm command line as data: arguments for v3 and v4, JSON answers, stuck releases."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from helmcli.commands import (
    chart_args,
    coalesce,
    digest_of,
    in_progress,
    is_unchanged,
    not_found,
    parse_history,
    parse_release,
    parse_version,
    release_digest,
    repair_for,
    upgrade_args,
    user_values,
    wait_args,
    without_debug_log,
)
from spec.rollout import ChartRef, HelmRelease, Target

V3 = parse_version("v3.19.0+g3d8990f")
V4 = parse_version("v4.1.4+g05fa379")
TARGET = Target(cluster="c", namespace="llm-d", kubeconfig="/tmp/kc", context="sim")


def history(*entries: tuple[int, str, str]) -> str:
    return json.dumps(
        [
            {
                "revision": revision,
                "updated": "2025-07-26T10:00:00Z",
                "status": status,
                "chart": "lws-0.7.0",
                "app_version": "0.7.0",
                "description": description,
            }
            for revision, status, description in entries
        ]
    )


def test_versions_and_support() -> None:
    assert (V3.major, V3.minor, V3.supported) == (3, 19, True)
    assert (V4.major, V4.supported) == (4, True)
    assert not parse_version("v2.17.0").supported
    assert not parse_version("v3.2.0").supported
    with pytest.raises(ValueError):
        parse_version("command not found")


def test_wait_flags_differ_between_v3_and_v4() -> None:
    assert wait_args(V3, True, timedelta(minutes=2)) == ["--wait", "--timeout", "120s"]
    assert wait_args(V4, True, timedelta(minutes=2)) == ["--wait=legacy", "--timeout", "120s"]
    assert wait_args(V4, False, timedelta(seconds=30)) == ["--timeout", "30s"]


def test_chart_sources() -> None:
    assert chart_args(
        ChartRef(repository="https://charts.example", name="lws", version="0.7.0")
    ) == ["lws", "--repo", "https://charts.example", "--version", "0.7.0"]
    assert chart_args(ChartRef(oci="registry.k8s.io/lws/charts/lws", version="0.7.0")) == [
        "oci://registry.k8s.io/lws/charts/lws",
        "--version",
        "0.7.0",
    ]
    assert chart_args(ChartRef(path="/charts/demo")) == ["/charts/demo"]


def test_upgrade_never_puts_values_on_the_command_line() -> None:
    release = HelmRelease(
        release_name="infra", chart=ChartRef(path="/charts/infra"), values={"token": "s3cr3t"}
    )
    args = upgrade_args(
        V4, TARGET, release, "llm-d", "/private/values.json", "d1e5", True, timedelta(minutes=5)
    )
    assert "s3cr3t" not in " ".join(args)
    assert args[:4] == ["upgrade", "--install", "infra", "/charts/infra"]
    assert args[args.index("--values") + 1] == "/private/values.json"
    for flag, value in (
        ("--namespace", "llm-d"),
        ("--kubeconfig", "/tmp/kc"),
        ("--kube-context", "sim"),
        ("--output", "json"),
    ):
        assert args[args.index(flag) + 1] == value
    assert "--create-namespace" in args and "--wait=legacy" in args
    assert digest_of(args[args.index("--description") + 1]) == "d1e5"


def test_values_coalesce_like_helm(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("gateway:\n  className: istio\n  service: {type: NodePort}\nkeep: 1\n")
    release = HelmRelease(
        release_name="infra",
        chart=ChartRef(path=str(tmp_path)),
        values_files=[str(base)],
        values={"gateway": {"service": {"type": "ClusterIP"}}, "keep": None},
    )
    assert user_values(release) == {
        "gateway": {"className": "istio", "service": {"type": "ClusterIP"}}
    }
    assert coalesce({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}


def test_local_chart_digest_follows_its_files(tmp_path: Path) -> None:
    (tmp_path / "Chart.yaml").write_text("name: demo\nversion: 0.1.0\n")
    release = HelmRelease(release_name="demo", chart=ChartRef(path=str(tmp_path)))
    first = release_digest(release, {})
    assert release_digest(release, {}) == first
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "cm.yaml").write_text("kind: ConfigMap\n")
    assert release_digest(release, {}) != first
    assert release_digest(release, {"a": 1}) != release_digest(release, {})


def test_history_parses_and_stuck_releases_are_repaired_the_right_way() -> None:
    state = parse_history(
        history(
            (1, "superseded", "Install complete"),
            (2, "deployed", "Upgrade complete"),
            (3, "pending-upgrade", "Preparing upgrade"),
        ),
        "lws",
        "lws-system",
    )
    assert state.exists and state.revision == 3 and state.status == "pending-upgrade"
    assert state.last_deployed_revision == 2
    assert repair_for(state) == ("rollback", 2)
    pending_install = parse_history(
        history((1, "pending-install", "Initial install underway")), "lws", "lws-system"
    )
    assert repair_for(pending_install) == ("uninstall", None)
    healthy = parse_history(history((1, "deployed", "Install complete")), "lws", "lws-system")
    assert repair_for(healthy) is None
    # A first install a busy API server failed, and an uninstall it cut short.
    failed_install = parse_history(history((1, "failed", "failed")), "lws", "lws-system")
    assert repair_for(failed_install) == ("uninstall", None)
    uninstalling = parse_history(history((1, "uninstalling", "Deletion in progress")), "l", "n")
    assert repair_for(uninstalling) == ("uninstall", None)
    failed_upgrade = parse_history(
        history((1, "deployed", "Install complete"), (2, "failed", "failed")), "lws", "lws-system"
    )
    assert repair_for(failed_upgrade) is None
    assert not parse_history("[]", "lws", "lws-system").exists


def test_unchanged_uses_our_digest_or_helms_values() -> None:
    ours = parse_history(history((1, "deployed", "llmd-rollout digest=abc")), "lws", "ns")
    assert is_unchanged(ours, "abc", None, {}, "0.7.0")
    assert not is_unchanged(ours, "def", None, {}, "0.7.0")
    theirs = parse_history(history((4, "deployed", "Upgrade complete")), "lws", "ns")
    assert is_unchanged(theirs, "abc", {"a": 1}, {"a": 1}, "0.7.0")
    assert not is_unchanged(theirs, "abc", {"a": 1}, {"a": 2}, "0.7.0")
    assert not is_unchanged(theirs, "abc", {"a": 1}, {"a": 1}, "0.8.0")
    failed = parse_history(history((1, "failed", "llmd-rollout digest=abc")), "lws", "ns")
    assert not is_unchanged(failed, "abc", None, {}, None)


def test_release_json_of_v3_and_v4() -> None:
    document = {
        "name": "lws",
        "info": {"status": "deployed", "description": "Install complete"},
        "chart": {"metadata": {"name": "lws", "version": "0.7.0"}},
        "version": 3,
        "namespace": "lws-system",
    }
    assert parse_release(json.dumps(document)) == (3, "deployed", "lws-0.7.0")


def test_error_classification() -> None:
    assert in_progress(
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress"
    )


# What helm v4 and v3 print for `helm uninstall --debug` when the API server answers one delete
# with 503 (recorded against clustersim; v3's stack trace shortened), and v3 ignoring objects
# already gone.
V4_REFUSED_DELETE = """\
level=DEBUG msg="uninstall: deleting release" name=xm
level=DEBUG msg="starting delete resource" namespace=default name=xm-web kind=Service
level=DEBUG msg="uninstall: Failed to delete release" error="[injected (503 ServiceUnavailable)]"
Error: failed to delete release: xm
"""
V3_REFUSED_DELETE = """\
uninstall.go:102: 2026-12-07 10:30:55.589 +0000 UTC m=+0.04 [debug] uninstall: Deleting x3
client.go:506: 2026-12-07 10:30:55.596 +0000 UTC m=+0.04 [debug] Starting delete for \
"x3-web" Service
client.go:510: 2026-12-07 10:30:55.597 +0000 UTC m=+0.04 [debug] Ignoring delete failure for \
"x3-web" apps/v1, Kind=Deployment: deployments.apps "x3-web" not found
uninstall.go:124: 2026-12-07 10:30:55.599 +0000 UTC m=+0.05 [debug] uninstall: Failed to delete \
release: [injected (503 ServiceUnavailable)]
Error: failed to delete release: x3
helm.go:92: 2026-12-07 10:30:55.599 +0000 UTC m=+0.05 [debug] failed to delete release: x3
helm.sh/helm/v3/pkg/action.(*Uninstall).Run
\thelm.sh/helm/v3/pkg/action/uninstall.go:125
runtime.goexit
\truntime/asm_amd64.s:1700
"""


@pytest.mark.parametrize(
    ("stderr", "release"), [(V4_REFUSED_DELETE, "xm"), (V3_REFUSED_DELETE, "x3")]
)
def test_a_refused_delete_keeps_the_api_servers_answer_and_drops_the_debug_log(
    stderr: str, release: str
) -> None:
    said = without_debug_log(stderr)
    assert said == (
        f"Error: failed to delete release: {release}\n"
        "because: [injected (503 ServiceUnavailable)]"
    )
    # The raw log says "not found" of an object already gone: not of the release.
    assert not not_found(said)


def test_output_without_a_debug_log_is_left_as_helm_wrote_it() -> None:
    plain = (
        "Error: unable to build kubernetes objects from release manifest: resource mapping not "
        'found for name: "gw" namespace: "" from "": no matches for kind "Gateway"\n'
        "ensure CRDs are installed first\n"
        "level=WARN msg=\"deprecated flag\""
    )
    assert without_debug_log(plain) == plain
