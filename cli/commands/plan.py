"""`llmd-rollout plan -f SPEC`: what a rollout of the spec would change, changing nothing.

It reads the cluster directly (the kubeconfig of the spec's target, or --kubeconfig) with the
activities' own functions, not through Temporal, so nothing needs to run but the cluster (the
one thing only Temporal knows, other rollouts' GPU holds, is asked of it when it answers):
- the recorded last-known-good revision, hence install or upgrade, and the model-service steps
  and gates the workflow will walk (workflows.plan, the same pure function it uses);
- per phase: CRD bundles, Helm releases (install, upgrade or unchanged, judged by the digest
  our installs record), namespace and Secret;
- the rendered model-service objects against the cluster: create, configure, bookkeeping (only
  our spec-revision annotation changes) or unchanged, by a server-side apply dry run; `--diff`
  adds the unified diffs;
- the capacity plan preflight will check, counting the GPUs other targets' rollouts hold until
  they end (read from the cluster workflow over the Temporal connection, cli/capacity_holds.py;
  without Temporal the plan says they were not counted), and, when it does not fit now and the
  spec may wait for capacity (budgets.capacityWait), whether the nodes could hold it with nothing
  else on them: the capacity hold's own judgement of whether waiting could help.
It leads with a summary of the real changes (cli.plansummary): images by role, how many objects
change, GPUs more or fewer. Exit codes, as `kubectl diff`: 0 nothing would change, 7 something
would (ExitCode.CHANGES), 5 the rollout would be refused at preflight (ExitCode.REFUSED): the
capacity plan does not fit and the spec does not wait for capacity, or even empty nodes could not
hold it. A plan that does not fit now but that the rollout would wait for exits 7, with a
warning: the rollout is not refused, it waits up to budgets.capacityWait for the GPUs.
Before any of that, every local chart is rendered with its values (helm template): values the
chart refuses exit 5 without reading the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import difflib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml
from kubernetes.config.config_exception import ConfigException
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text

from activities import (
    GATEWAY_API_CRDS,
    INFERENCE_EXTENSION_CRDS,
    capacity_sync,
    check_crds,
    fits_an_empty_cluster_sync,
    model_service_objects,
    read_snapshot,
)
from cli.capacity_holds import OtherHolds, read_other_holds
from cli.commands.common import check_charts, load_spec_file
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.formatting import flexible, table
from cli.output import Output
from cli.plansummary import gpu_text, gpus, image_changes, is_bookkeeping
from helmcli import HelmError, HelmRunner, digest_of, release_digest, user_values
from k8s import ApiUnavailable, KubeClient, KubeError, UnknownKind
from k8s.reservations import node_level_reason
from manifests import spec_revision
from spec import RolloutSpec
from spec.activity_io import (
    FIELD_MANAGER,
    ApplyModelServiceInput,
    CapacityPlan,
    ObjectRef,
)
from spec.rollout import HelmRelease, Target
from spec.types import format_duration
from workflows.plan import RolloutPlan, plan_rollout

# Fields the API server owns: a diff of them says nothing about what the rollout changes.
_SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
                    "selfLink")


@dataclass(frozen=True)
class ObjectChange:
    ref: ObjectRef
    action: str
    diff: str
    # Comparable forms (server-owned fields dropped); `before` is empty for a new object.
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


BOOKKEEPING = "bookkeeping"


@dataclass(frozen=True)
class ReleaseChange:
    phase: str
    release: str
    namespace: str
    chart: str
    installed_revision: int | None
    status: str | None
    action: str


@dataclass
class ClusterView:
    """What the cluster holds that the plan compares against (read in one blocking pass)."""

    previous_revision: str | None
    capacity: CapacityPlan
    objects: list[ObjectChange]
    crds: list[dict[str, Any]]
    namespace_exists: bool
    secret_exists: bool
    server_version: str
    # Whether the plan would fit the nodes with nothing else on them; judged only when it does
    # not fit now and the spec may wait for capacity, as the capacity hold judges it (else None).
    fits_empty_nodes: bool | None = None
    notes: list[str] = field(default_factory=list)
    # What other targets' rollouts hold on the cluster, counted in `capacity`.
    holds: OtherHolds = field(default_factory=OtherHolds)

    def capacity_wait(self, spec: RolloutSpec) -> timedelta | None:
        """How long the rollout would wait for GPUs before being refused, when its plan does not
        fit now but could once other workloads free them; None when it fits or is refused at
        once."""
        if self.capacity.fits or not self.fits_empty_nodes or not spec.budgets.capacity_wait:
            return None
        return spec.budgets.capacity_wait


async def run(args: argparse.Namespace, output: Output) -> int:
    spec = load_spec_file(args.file)
    await check_charts(spec, args.file)
    target = _target(spec.target, args.kubeconfig, args.context)
    spec = spec.model_copy(update={"target": target})
    try:
        client = KubeClient.for_target(target)
    except (ConfigException, OSError) as error:
        raise CliError(
            f"no usable kubeconfig for {spec.target_id} ({error}); pass --kubeconfig, set "
            "KUBECONFIG, or set target.kubeconfig in the spec"
        ) from None
    holds = await read_other_holds(args, spec)
    try:
        view = await asyncio.to_thread(_read_cluster, client, spec, holds)
    except ApiUnavailable as error:
        raise CliError(
            f"the Kubernetes API server of {spec.target_id} is unreachable ({error.message}); "
            "check the kubeconfig"
        ) from None
    except KubeError as error:
        raise CliError(f"the Kubernetes API server refused a read: {error.message}") from None
    finally:
        client.close()
    rollout_plan = plan_rollout(spec, view.previous_revision, None)
    releases = [await _release_change(target, *entry) for entry in _releases(spec)]
    summary = _summary(spec, view, rollout_plan, releases)
    document = _document(args.file, spec, view, rollout_plan, releases, summary)
    output.document("Plan", document)
    output.show(_view(spec, view, rollout_plan, releases, summary, args))
    wait = view.capacity_wait(spec)
    if not view.capacity.fits and wait is None:
        return ExitCode.REFUSED
    # A plan the rollout would wait for is not refused at preflight, so not 5; it is still
    # something to look at, hence never 0.
    return ExitCode.CHANGES if summary.changes or wait is not None else ExitCode.SUCCESS


@dataclass(frozen=True)
class Summary:
    """The real changes, for the plan's first lines and its exit code."""

    lines: list[str]
    changes: bool
    counts: dict[str, int]
    gpu_delta: int
    images: list[dict[str, Any]]


def _summary(
    spec: RolloutSpec,
    view: ClusterView,
    rollout_plan: RolloutPlan,
    releases: list[ReleaseChange],
) -> Summary:
    changes = [c for c in view.objects if c.action != "unchanged"]
    counts: dict[str, int] = {}
    for change in view.objects:
        key = change.action if not change.action.startswith("rejected") else "rejected"
        counts[key] = counts.get(key, 0) + 1
    images = image_changes([(c.before, c.after) for c in changes])
    gpu_delta = sum(gpus(c.after) - gpus(c.before) for c in changes)
    release_changes = [r for r in releases if r.action != "unchanged"]
    crd_installs = [crd for crd in view.crds if crd["action"] not in ("apply", "check")]
    lines = [image.text() for image in images]
    total = len(view.objects)
    real = [c for c in changes if c.action != BOOKKEEPING]
    parts = [f"{len(real)} of {total} objects change"]
    if counts.get(BOOKKEEPING):
        parts.append(f"{counts[BOOKKEEPING]} only take the new revision annotation")
    lines.append(", ".join(parts) + f"; {gpu_text(gpu_delta)}")
    for release in release_changes:
        lines.append(f"helm release {release.release} ({release.phase}): {release.action}")
    for crd in crd_installs:
        lines.append(f"{crd['bundle']} CRDs {crd['version']}: {crd['action']}")
    if not view.namespace_exists:
        lines.append(f"namespace {spec.target.namespace}: create")
    revision_changes = view.previous_revision != spec_revision(spec)
    changed = bool(
        changes or release_changes or crd_installs or not view.namespace_exists
        or revision_changes
    )
    if not changed:
        lines = [f"nothing would change: {spec.target_id} runs revision {spec_revision(spec)}"]
    return Summary(
        lines=lines,
        changes=changed,
        counts=counts,
        gpu_delta=gpu_delta,
        images=[
            {"from": image.old, "to": image.new, "roles": list(image.roles)} for image in images
        ],
    )


def _target(target: Target, kubeconfig: str | None, context: str | None) -> Target:
    changes: dict[str, Any] = {}
    if kubeconfig:
        changes["kubeconfig"] = kubeconfig
    if context:
        changes["context"] = context
    return target.model_copy(update=changes) if changes else target


def _read_cluster(client: KubeClient, spec: RolloutSpec, holds: OtherHolds) -> ClusterView:
    target = spec.target
    version = client.server_version()
    recorded = read_snapshot(client, target, spec.metadata.name, None)
    previous = recorded[0].revision if recorded is not None else None
    bundles = (
        ("gateway-api", spec.dependencies.gateway_api_crds, list(GATEWAY_API_CRDS)),
        ("inference-extension", spec.dependencies.inference_extension_crds,
         list(INFERENCE_EXTENSION_CRDS)),
    )
    crds = []
    for name, bundle, names in bundles:
        checks = check_crds(client, names)
        present = sum(1 for check in checks if check.present and check.established)
        if bundle.already_installed:
            action = "check" if present == len(names) else "missing (preflight fails)"
        else:
            action = "apply" if present == len(names) else "install"
        crds.append(
            {"bundle": name, "version": bundle.version, "source": bundle.source,
             "present": present, "total": len(names), "action": action}
        )
    namespace = ObjectRef(api_version="v1", kind="Namespace", name=target.namespace)
    token = spec.model_service.hf_token
    secret = ObjectRef(
        api_version="v1", kind="Secret", name=token.secret_name, namespace=target.namespace
    )
    namespace_exists = client.get(namespace) is not None
    objects = [
        _object_change(client, obj)
        for obj in model_service_objects(ApplyModelServiceInput(spec=spec, part="all"))
    ]
    # Capacity for the roles the rollout (re)creates, as preflight plans it.
    roles = list(plan_rollout(spec, previous, None).changed_roles)
    capacity = capacity_sync(client, spec, roles, holds.held, holds.covers)
    # The capacity hold waits only for a plan the nodes could hold empty; a spec that does not
    # wait is told whether waiting would help.
    fits_empty = None if capacity.fits else fits_an_empty_cluster_sync(client, spec, roles)
    return ClusterView(
        previous_revision=previous,
        capacity=capacity,
        objects=objects,
        crds=crds,
        namespace_exists=namespace_exists,
        secret_exists=namespace_exists and client.get(secret) is not None,
        server_version=str(version.get("gitVersion", "")),
        fits_empty_nodes=fits_empty,
        holds=holds,
    )


def _object_change(client: KubeClient, rendered: dict[str, Any]) -> ObjectChange:
    ref = ObjectRef.of(rendered)
    try:
        live = client.get(ref)
    except UnknownKind:
        live = None
    if live is None:
        return ObjectChange(ref, "create", _diff(str(ref), {}, rendered), {}, rendered)
    resource = client.resource_of(ref)
    try:
        merged = client.request(
            "PATCH",
            resource.path(ref.namespace, ref.name),
            [("fieldManager", FIELD_MANAGER), ("force", "true"), ("dryRun", "All")],
            body=rendered,
            content_type="application/apply-patch+yaml",
        )
    except KubeError as error:
        return ObjectChange(ref, f"rejected: {error.message}", "")
    before, after = _comparable(live), _comparable(merged)
    if before == after:
        return ObjectChange(ref, "unchanged", "", before, after)
    action = BOOKKEEPING if is_bookkeeping(before, after) else "configure"
    return ObjectChange(ref, action, _diff(str(ref), before, after), before, after)


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    cleaned = copy.deepcopy(obj)
    cleaned.pop("status", None)
    metadata = cleaned.get("metadata") or {}
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    return cleaned


def _diff(name: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    old = yaml.safe_dump(before, sort_keys=True).splitlines(keepends=True) if before else []
    new = yaml.safe_dump(after, sort_keys=True).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(old, new, fromfile=f"cluster/{name}", tofile=f"rollout/{name}")
    )


def _releases(spec: RolloutSpec) -> list[tuple[str, HelmRelease]]:
    found: list[tuple[str, HelmRelease]] = []
    lws = spec.dependencies.leader_worker_set.release
    if lws is not None:
        found.append(("dependencies", lws))
    found += [("gateway-provider", release) for release in spec.gateway_provider.releases]
    found.append(("infra", spec.infra))
    return found


async def _release_change(target: Target, phase: str, release: HelmRelease) -> ReleaseChange:
    namespace = release.namespace or target.namespace
    chart = release.chart.path or release.chart.oci or (
        f"{release.chart.repository or ''} {release.chart.name or ''}".strip()
    )
    if release.chart.version:
        chart += f" {release.chart.version}"
    base = ReleaseChange(phase, release.release_name, namespace, chart, None, None, "install")
    try:
        state = await HelmRunner().release_state(target, release.release_name, namespace)
    except HelmError as error:
        return _replace(base, action=f"unknown: {error.message}")
    if not state.exists:
        return base
    recorded = digest_of(state.history[-1].description) if state.history else None
    desired = release_digest(release, user_values(release))
    if recorded == desired and state.status == "deployed":
        action = "unchanged"
    elif recorded is None:
        action = "upgrade (installed by someone else: unchanged if helm's values match)"
    else:
        action = "upgrade"
    return _replace(
        base, installed_revision=state.revision, status=state.status, action=action
    )


def _replace(change: ReleaseChange, **update: Any) -> ReleaseChange:
    return ReleaseChange(**{**change.__dict__, **update})


def _steps(rollout_plan: RolloutPlan) -> list[dict[str, Any]]:
    return [
        {
            "role": step.role,
            "name": step.name,
            "partition": step.partition,
            "changed": step.changed,
            "gate": None if step.gate is None else {
                "name": step.gate_name,
                "approval": step.gate.approval,
                "pause": step.gate.pause.total_seconds() if step.gate.pause else None,
            },
            "verifyAfter": step.verify_after,
        }
        for step in rollout_plan.steps
    ]


def _document(
    file: str,
    spec: RolloutSpec,
    view: ClusterView,
    rollout_plan: RolloutPlan,
    releases: list[ReleaseChange],
    summary: Summary,
) -> dict[str, Any]:
    between = rollout_plan.between_roles
    wait = view.capacity_wait(spec)
    return {
        "target": spec.target_id,
        "changes": summary.changes,
        "summary": {
            "lines": summary.lines,
            "images": summary.images,
            "objects": summary.counts,
            "gpuDelta": summary.gpu_delta,
        },
        "file": file,
        "serverVersion": view.server_version,
        "revision": spec_revision(spec),
        "previousRevision": view.previous_revision,
        "firstInstall": rollout_plan.first_install,
        "changedRoles": list(rollout_plan.changed_roles),
        "steps": _steps(rollout_plan),
        "betweenRoles": None if between is None else {
            "approval": between.approval,
            "pause": between.pause.total_seconds() if between.pause else None,
        },
        "crds": view.crds,
        "namespace": {
            "name": spec.target.namespace,
            "action": "unchanged" if view.namespace_exists else "create",
        },
        "hfTokenSecret": {
            "name": spec.model_service.hf_token.secret_name,
            "action": _secret_action(spec, view),
        },
        "helmReleases": [
            {
                "phase": change.phase, "release": change.release, "namespace": change.namespace,
                "chart": change.chart, "installedRevision": change.installed_revision,
                "status": change.status, "action": change.action,
            }
            for change in releases
        ],
        "objects": [
            {**change.ref.model_dump(mode="json"), "action": change.action}
            for change in view.objects
        ],
        "diff": "".join(change.diff for change in view.objects),
        "capacity": view.capacity.model_dump(mode="json"),
        "fits": view.capacity.fits,
        # Not fitting now: whether empty nodes could hold it (null when not judged), and how long
        # the rollout would wait for the GPUs before being refused (null: it fits, or is refused
        # at once).
        "fitsEmptyNodes": view.fits_empty_nodes,
        "wouldWaitSeconds": None if wait is None else wait.total_seconds(),
        # GPUs other targets' rollouts hold until they end, counted in `capacity`: `read` false
        # (and `unread` why) when the cluster workflow could not be asked.
        "heldByOtherRollouts": {
            "read": view.holds.unread is None,
            "unread": view.holds.unread,
            "targets": view.holds.targets,
            "gpus": view.holds.gpus,
        },
    }


def _secret_action(spec: RolloutSpec, view: ClusterView) -> str:
    token = spec.model_service.hf_token
    if token.existing_secret:
        return "check (existing Secret)"
    source = f"from the worker's ${token.from_env}" if token.from_env else "from the worker"
    return f"{'update' if view.secret_exists else 'create'} {source}"


def _view(
    spec: RolloutSpec,
    view: ClusterView,
    rollout_plan: RolloutPlan,
    releases: list[ReleaseChange],
    summary: Summary,
    args: argparse.Namespace,
) -> RenderableType:
    kind = "first install" if rollout_plan.first_install else (
        f"upgrade from revision {view.previous_revision}"
    )
    parts: list[RenderableType] = [
        Text(f"plan for {spec.target_id}: {kind} to revision {spec_revision(spec)}", style="bold"),
        *(Text(f"  {line}", style="bold" if summary.changes else "green")
          for line in summary.lines),
        Text(f"cluster: Kubernetes {view.server_version}", style="dim"),
        Text(""),
        Text("dependencies and releases", style="bold"),
    ]
    releases_table = table("PHASE", "WHAT", "ACTION")
    flexible(releases_table, "WHAT", "ACTION")
    for crd in view.crds:
        releases_table.add_row(
            "dependencies", f"{crd['bundle']} CRDs {crd['version']} ({crd['source']}, "
            f"{crd['present']}/{crd['total']} present)", crd["action"],
        )
    for release in releases:
        installed = f", revision {release.installed_revision} {release.status}" if (
            release.installed_revision is not None) else ""
        releases_table.add_row(
            release.phase, f"helm release {release.release} ({release.namespace}) "
            f"{release.chart}{installed}", release.action,
        )
    releases_table.add_row(
        "namespace", f"namespace {spec.target.namespace}",
        "unchanged" if view.namespace_exists else "create",
    )
    releases_table.add_row(
        "namespace", f"Secret {spec.model_service.hf_token.secret_name}",
        _secret_action(spec, view),
    )
    parts += [releases_table, Text(""), Text("model-service objects", style="bold")]
    objects = table("ACTION", "OBJECT")
    bookkeeping = [c for c in view.objects if c.action == BOOKKEEPING]
    for change in view.objects:
        if change.action != BOOKKEEPING:
            objects.add_row(change.action, str(change.ref))
    parts.append(objects)
    if bookkeeping:
        names = ", ".join(f"{c.ref.kind}/{c.ref.name}" for c in bookkeeping)
        parts.append(Text(f"only the revision annotation changes: {names}", style="dim"))
    parts += [Text(""), Text("model-service steps", style="bold")]
    steps = table("STEP", "CHANGED", "THEN")
    for step in rollout_plan.steps:
        then = []
        if step.verify_after:
            then.append("verify")
        if step.gate is not None:
            if step.gate.pause is not None:
                then.append(f"pause {step.gate.pause}")
            if step.gate.approval:
                then.append("wait for approval")
        steps.add_row(step.name, "yes" if step.changed else "no", ", ".join(then) or "-")
    parts.append(steps)
    if rollout_plan.between_roles is not None:
        parts.append(Text("between roles: " + (
            "wait for approval" if rollout_plan.between_roles.approval else
            f"pause {rollout_plan.between_roles.pause}"
        )))
    diff = "".join(change.diff for change in view.objects if change.before and change.diff)
    if diff and args.diff:
        parts += [Text(""), Text("diff of the objects that change", style="bold"),
                  Syntax(diff, "diff", background_color="default")]
    elif diff:
        parts += [Text(""), Text(f"full diffs: llmd-rollout plan -f {args.file} --diff",
                                 style="dim")]
    parts += [Text(""), *_capacity(spec, view)]
    return Group(*parts)


def _capacity(spec: RolloutSpec, view: ClusterView) -> list[RenderableType]:
    """The capacity plan, led, when it does not fit now and the spec may wait for capacity, by
    what the rollout would do: wait for the GPUs (a warning: not refused at preflight) or be
    refused at once (bold red)."""
    plan = view.capacity
    lead = _holds_line(view.holds)
    if plan.fits:
        return [*lead, Text(plan.render())]
    wait = view.capacity_wait(spec)
    if wait is not None:
        style = "yellow"
        sentence = (
            f"the GPUs are not free now: the rollout would wait up to {format_duration(wait)} "
            "for them (budgets.capacityWait) before being refused"
        )
    elif view.fits_empty_nodes is False and spec.budgets.capacity_wait:
        style = "bold red"
        sentence = (
            "the rollout would be refused at once, without waiting its budgets.capacityWait of "
            f"{format_duration(spec.budgets.capacity_wait)}: even with nothing else on them the "
            "nodes could not hold it"
        )
    elif view.fits_empty_nodes:
        style = "bold red"
        sentence = (
            "the GPUs are not free now and the rollout would be refused at preflight; the nodes "
            "could hold it with nothing else on them, so with budgets.capacityWait set it would "
            "wait for them instead"
        )
    else:
        return [*lead, Text(plan.render(), style="bold red")]
    return [
        *lead,
        Text(f"{sentence}; {node_level_reason(plan)}", style=style),
        Text(plan.render(), style=style),
    ]


def _holds_line(holds: OtherHolds) -> list[RenderableType]:
    """Whether the plan counts what other rollouts hold: a warning when it could not."""
    if holds.unread is not None:
        return [Text(f"GPU holds of other rollouts not counted: {holds.unread}", style="yellow")]
    if not holds.targets:
        return []
    return [Text(
        f"counted as taken: {holds.gpus} GPUs held by running rollouts of "
        + ", ".join(holds.targets), style="dim",
    )]
