"""The helm command line as data: arguments built, JSON answers parsed, stuck releases read.

Where it sits: pure functions under activities/helm.py, which runs the commands. Helm v3 and v4
differ in a few flags (v4's `--wait` takes a strategy; v4 applies server-side by default, which
we keep); everything else is common. Values never appear in arguments: they go in a private file
the caller writes, and what the release was installed from is recorded as a digest in the
release description, so a re-run can tell "unchanged" without a diff plugin.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from spec.activity_io import HelmReleaseState, HelmRevision
from spec.rollout import ChartRef, HelmRelease, Target
from spec.yaml_documents import load_document

DIGEST_PREFIX = "llmd-rollout digest="
PENDING_STATUSES = ("pending-install", "pending-upgrade", "pending-rollback")
SUPPORTED_MAJORS = (3, 4)
MIN_V3_MINOR = 8
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_NOT_FOUND = re.compile(r"release: not found|not found", re.IGNORECASE)
_IN_PROGRESS = re.compile(r"another operation \(install/upgrade/rollback\) is in progress")
# Helm's debug log (`--debug`, on stderr): v4 writes slog lines, "level=DEBUG msg=..."; v3 writes
# "file.go:N: <time> [debug] ..." and, after its "Error:" line, the error's Go stack trace.
_DEBUG_LINE = re.compile(r"^(?:level=DEBUG\b|\S+\.go:\d+: .*?\[debug\] )")
# The debug line an uninstall needs: the API server's answers behind helm's own
# "Error: failed to delete release: NAME", which names none of them (v4, then v3).
_DELETE_CAUSE = re.compile(
    r'msg="uninstall: Failed to delete release" error="(?P<v4>.*)"$'
    r"|\[debug\] uninstall: Failed to delete release: (?P<v3>.*)$"
)


@dataclass(frozen=True)
class HelmVersion:
    text: str
    major: int
    minor: int

    @property
    def supported(self) -> bool:
        if self.major == 3:
            return self.minor >= MIN_V3_MINOR
        return self.major in SUPPORTED_MAJORS


def parse_version(text: str) -> HelmVersion:
    """`helm version --short` ("v4.1.4+g05fa379") or the BuildInfo line."""
    match = _VERSION.search(text)
    if not match:
        raise ValueError(f"cannot read a helm version from {text.strip()!r}")
    return HelmVersion(f"v{match.group(0).lstrip('v')}", int(match.group(1)), int(match.group(2)))


def target_args(target: Target) -> list[str]:
    args = []
    if target.kubeconfig:
        args += ["--kubeconfig", target.kubeconfig]
    if target.context:
        args += ["--kube-context", target.context]
    return args


def chart_args(chart: ChartRef) -> list[str]:
    """The chart operand and its source flags: repository URL + name, OCI reference or path."""
    if chart.path:
        return [chart.path]
    if chart.oci:
        reference = chart.oci if chart.oci.startswith("oci://") else f"oci://{chart.oci}"
        return [reference, *(["--version", chart.version] if chart.version else [])]
    if chart.repository and chart.name:
        return [
            chart.name,
            "--repo",
            chart.repository,
            *(["--version", chart.version] if chart.version else []),
        ]
    raise ValueError("a chart needs a path, an oci reference, or a repository and a name")


def wait_args(version: HelmVersion, wait: bool, timeout: timedelta) -> list[str]:
    """Wait for the release's resources to be ready: v3's boolean `--wait`, v4's `legacy`
    strategy. Both poll; v4's `watcher` rides on watch streams and, when the API server cuts
    them (a restart, a load balancer), never sees a CRD turn Established and times out."""
    seconds = f"{max(1, int(timeout.total_seconds()))}s"
    if not wait:
        return ["--timeout", seconds]
    flag = "--wait=legacy" if version.major >= 4 else "--wait"
    return [flag, "--timeout", seconds]


def upgrade_args(
    version: HelmVersion,
    target: Target,
    release: HelmRelease,
    namespace: str,
    values_file: str,
    digest: str,
    wait: bool,
    timeout: timedelta,
) -> list[str]:
    """`helm upgrade --install`: values files in order, then our private values file last."""
    args = ["upgrade", "--install", release.release_name, *chart_args(release.chart)]
    args += ["--namespace", namespace, "--create-namespace"]
    for values in release.values_files:
        args += ["--values", values]
    args += ["--values", values_file]
    args += ["--description", f"{DIGEST_PREFIX}{digest}"]
    args += wait_args(version, wait, timeout)
    args += ["--output", "json", *target_args(target)]
    return args


def rollback_args(
    version: HelmVersion,
    target: Target,
    release: str,
    namespace: str,
    revision: int,
    wait: bool,
    timeout: timedelta,
) -> list[str]:
    return [
        "rollback",
        release,
        str(revision),
        "--namespace",
        namespace,
        *wait_args(version, wait, timeout),
        *target_args(target),
    ]


def uninstall_args(
    version: HelmVersion,
    target: Target,
    release: str,
    namespace: str,
    wait: bool,
    timeout: timedelta,
) -> list[str]:
    return [
        "uninstall",
        release,
        "--namespace",
        namespace,
        *wait_args(version, wait, timeout),
        *target_args(target),
        # Helm says only "failed to delete release: NAME" when deleting an object fails; the
        # API server's answer (a 503 to retry, a Forbidden to report) is in its debug log.
        "--debug",
    ]


def history_args(target: Target, release: str, namespace: str) -> list[str]:
    return ["history", release, "--namespace", namespace, "--output", "json", *target_args(target)]


def get_values_args(target: Target, release: str, namespace: str) -> list[str]:
    return [
        "get",
        "values",
        release,
        "--namespace",
        namespace,
        "--output",
        "json",
        *target_args(target),
    ]


def coalesce(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of values files: maps merge key by key, the later wins, null deletes."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def user_values(release: HelmRelease) -> dict[str, Any]:
    """What `helm get values` will show after our install: the files, then the inline values."""
    merged: dict[str, Any] = {}
    for path in release.values_files:
        document = load_document(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(document, dict):
            raise ValueError(f"values file {path} is not a YAML mapping")
        merged = coalesce(merged, document)
    return coalesce(merged, release.values)


def chart_digest(chart: ChartRef) -> str:
    """What identifies the chart's content: the reference and version, or a local chart's files
    (a local chart can change without a version bump)."""
    hasher = hashlib.sha256()
    if chart.path and Path(chart.path).exists():
        root = Path(chart.path)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            hasher.update(str(path.relative_to(root) if root.is_dir() else path.name).encode())
            hasher.update(path.read_bytes())
    else:
        hasher.update(json.dumps(chart.model_dump(mode="json"), sort_keys=True).encode())
    return hasher.hexdigest()


def release_digest(release: HelmRelease, values: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"chart": chart_digest(release.chart), "values": values}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def digest_of(description: str) -> str | None:
    match = re.search(re.escape(DIGEST_PREFIX) + r"([0-9a-f]+)", description)
    return match.group(1) if match else None


def local_chart_version(chart: ChartRef) -> str | None:
    if not chart.path:
        return chart.version
    chart_file = Path(chart.path) / "Chart.yaml"
    if not chart_file.is_file():
        return None
    document = load_document(chart_file.read_text(encoding="utf-8")) or {}
    version = document.get("version")
    return str(version) if version is not None else None


def parse_history(output: str, release: str, namespace: str) -> HelmReleaseState:
    """`helm history -o json` (same shape in v3 and v4) as a release state."""
    return history_state(json.loads(output or "[]") or [], release, namespace)


def history_state(
    entries: Sequence[Mapping[str, Any]], release: str, namespace: str
) -> HelmReleaseState:
    """Entries shaped as `helm history -o json` lists them (helmcli/storage.py reads the same
    from helm's records) as a release state."""
    history = [
        HelmRevision(
            revision=int(e.get("revision", 0)),
            status=str(e.get("status", "")),
            chart=str(e.get("chart", "")),
            app_version=str(e.get("app_version", "")),
            description=str(e.get("description", "")),
            updated=str(e.get("updated", "")),
        )
        for e in entries
    ]
    history.sort(key=lambda r: r.revision)
    latest = history[-1] if history else None
    return HelmReleaseState(
        release_name=release,
        namespace=namespace,
        exists=latest is not None,
        revision=latest.revision if latest else None,
        status=latest.status if latest else None,
        chart=latest.chart if latest else None,
        history=history,
    )


def parse_release(output: str) -> tuple[int | None, str | None, str | None]:
    """(revision, status, chart) from `upgrade/status -o json` (v3 and v4 field names)."""
    document = json.loads(output or "{}") or {}
    info = document.get("info") or {}
    metadata = (document.get("chart") or {}).get("metadata") or {}
    chart = f"{metadata['name']}-{metadata['version']}" if metadata.get("name") else None
    revision = document.get("version", document.get("revision"))
    return (int(revision) if revision is not None else None, info.get("status"), chart)


RepairAction = tuple[Literal["uninstall"], None] | tuple[Literal["rollback"], int]


def repair_for(state: HelmReleaseState) -> RepairAction | None:
    """How to free a release a killed helm left locked in pending-*: a pending install is
    uninstalled; a pending upgrade or rollback goes back to the last good revision (or is
    uninstalled when there is none). A first install that failed (helm cannot upgrade a release
    never deployed: "has no deployed releases") or an uninstall cut short is uninstalled too."""
    ever_deployed = any(r.status in ("deployed", "superseded") for r in state.history)
    if state.status == "uninstalling" or (state.status == "failed" and not ever_deployed):
        return ("uninstall", None)
    if state.status not in PENDING_STATUSES:
        return None
    earlier = [
        r.revision
        for r in state.history
        if r.status in ("deployed", "superseded") and r.revision != state.revision
    ]
    if state.status == "pending-install" or not earlier:
        return ("uninstall", None)
    return ("rollback", max(earlier))


def is_unchanged(
    state: HelmReleaseState,
    digest: str,
    deployed_values: Mapping[str, Any] | None,
    values: Mapping[str, Any],
    chart_version: str | None,
) -> bool:
    """A deployed release already installed from this chart and these values."""
    if not state.exists or state.status != "deployed" or not state.history:
        return False
    recorded = digest_of(state.history[-1].description)
    if recorded is not None:
        return recorded == digest
    # Installed by someone else: compare what helm itself records.
    same_version = chart_version is None or (state.chart or "").endswith(f"-{chart_version}")
    return same_version and dict(deployed_values or {}) == dict(values)


def not_found(stderr: str) -> bool:
    return bool(_NOT_FOUND.search(stderr))


def in_progress(stderr: str) -> bool:
    return bool(_IN_PROGRESS.search(stderr))


def without_debug_log(stderr: str) -> str:
    """Helm's error output without its debug log, but with the cause of a failed delete after
    the error it belongs to. Without `--debug` helm writes no such lines: the text is unchanged."""
    said: list[str] = []
    causes: list[str] = []
    for line in stderr.splitlines():
        if _DEBUG_LINE.match(line):
            if any(kept.startswith("Error: ") for kept in said):
                break  # v3: the error again, then its stack trace.
            cause = _DELETE_CAUSE.search(line)
            if cause:
                causes.append(f"because: {cause.group('v4') or cause.group('v3')}")
            continue
        said.append(line)
    return "\n".join([*said, *causes])


def last_lines(text: str, count: int = 15) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()][-count:]


def command_line(args: Sequence[str]) -> str:
    """The command for messages and logs (it never holds values: those are in a file)."""
    return " ".join(args)
