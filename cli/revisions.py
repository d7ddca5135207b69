"""The roles table of the live view and `status`: per role, the stable revision and the one
the rollout applies side by side (as `kubectl argo rollouts get rollout` shows them), each with
its image, groups, pods ready and loaded; per loading pod, the revision it runs; during a
rollback, what is being restored.

Where it sits: cli.views puts these tables into the snapshot view. They read only the
workflow's RoleProgress (which revision is stable, which updates, how far the role's step has
gone) and the model-load heartbeat (each pod's LWS template-revision-hash and image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from cli.formatting import cut, table, weights_cell
from spec.activity_io import ModelLoadProgress
from spec.workflow_io import Progress, RoleProgress, RunState

_POD_STYLE = {
    "serving": "green",
    "failed": "bold red",
    "loading": "cyan",
    "serving-probe": "cyan",
}


@dataclass(frozen=True)
class RevisionRow:
    """One revision of one role, as the roles table shows it."""

    role: str
    revision: str
    label: str
    image: str
    groups: str
    pods: int
    ready: str
    loaded: str
    weights: float | None
    state: str


def revision_rows(role: RoleProgress, state: RunState) -> list[RevisionRow]:
    """The role's stable revision (what served before; what a rollback restores) and the one
    this rollout applies, side by side. Before the role's step begins every group still runs
    the stable revision, so the new one is `pending`, not "not ready"."""
    per_group = role.pods // role.groups if role.groups else 0
    rolling_back = state == RunState.ROLLING_BACK
    stable = role.stable_revision
    new = role.revision
    if stable is not None and (new is None or new == stable) and not role.updating:
        # Nothing of this role changes (or not yet known to): the stable revision serves.
        return [RevisionRow(
            role.role, stable, "stable", role.stable_image or role.image, str(role.groups),
            role.pods, "-", "-", None, "serving",
        )]
    rows = []
    if stable is not None:
        # Groups below the partition keep the stable revision while the role updates.
        old_groups = (role.partition or 0) if role.updating else role.groups
        if old_groups or rolling_back:
            serving = "serving" if old_groups else "replaced"
            rows.append(RevisionRow(
                role.role, stable, "stable", role.stable_image or "-", str(old_groups),
                old_groups * per_group, "-", "-", None,
                "restoring" if rolling_back and role.updating else serving,
            ))
    new_groups = role.groups - (role.partition or 0) if role.updating else role.groups
    if not role.updating:
        new_state, ready, loaded = "cancelled" if rolling_back else "pending", "-", "-"
    else:
        new_state = "rolling back" if rolling_back else (
            "serving" if role.pods_loaded >= new_groups * per_group and new_groups else "updating"
        )
        ready, loaded = str(role.pods_ready), str(role.pods_loaded)
    rows.append(RevisionRow(
        "" if rows else role.role, new or "-", "new",
        role.image, f"{role.groups_updated}/{new_groups}" if role.updating else f"0/{new_groups}",
        new_groups * per_group, ready, loaded, role.load_percent if role.updating else None,
        new_state,
    ))
    return rows


def roles_table(roles: Sequence[RoleProgress], state: RunState) -> Table:
    """Per role, one row per revision. READY is Kubernetes' word, LOADED is vLLM serving the
    model (the reference pods turn Ready minutes before); the stable revision's pods were
    verified serving when it became last known good, which the caption says."""
    grid = table()
    for column in ("ROLE", "REVISION"):
        grid.add_column(column, no_wrap=True)
    grid.add_column("IMAGE")
    for column in ("GROUPS", "PODS", "READY", "LOADED"):
        grid.add_column(column, justify="right", no_wrap=True)
    grid.add_column("WEIGHTS", no_wrap=True)
    grid.add_column("STATE", no_wrap=True)
    stable = False
    for role in roles:
        for row in revision_rows(role, state):
            stable = stable or row.label == "stable"
            style = _REVISION_STYLE.get(row.state.split(" ")[0], "")
            grid.add_row(
                row.role, Text(f"{row.revision[:12]} {row.label}", style="dim"), cut(row.image),
                row.groups, str(row.pods), row.ready, row.loaded, weights_cell(row.weights),
                Text(row.state, style=style),
            )
    if stable:
        grid.caption = STABLE_CAPTION
        grid.caption_justify = "left"
        grid.caption_style = "dim"
    return grid


STABLE_CAPTION = "stable: last known good, verified serving when recorded; new: this rollout's"


_REVISION_STYLE = {
    "serving": "green", "updating": "cyan", "pending": "dim", "restoring": "yellow",
    "rolling": "yellow", "replaced": "dim", "cancelled": "dim",
}


def pods_table(heartbeat: ModelLoadProgress) -> Table:
    """The pods of the role being loaded, each with the revision it runs (new: the revision
    this wait is for; old: one not yet replaced)."""
    grid = table()
    for column in ("POD", "NODE", "REVISION", "STATE", "WEIGHTS"):
        grid.add_column(column, no_wrap=True)
    grid.add_column("DETAIL")
    for pod in heartbeat.pods:
        revision = "-"
        if pod.revision_hash is not None:
            which = "new" if pod.revision_hash == heartbeat.revision_hash else "old"
            revision = f"{which} {pod.image or pod.revision_hash}"
        grid.add_row(
            pod.name, pod.node or "-", cut(revision),
            Text(pod.phase, style=_POD_STYLE.get(pod.phase, "")),
            weights_cell(pod.weights_percent), cut(pod.detail),
        )
    return grid


def restoring_line(progress: Progress) -> str:
    """While rolling back: the revision (and images) being restored."""
    if progress.state != RunState.ROLLING_BACK or not progress.roles:
        return ""
    stable = progress.roles[0].stable_revision
    if stable is None:
        return "rolling back a first install: nothing to restore"
    images = ", ".join(
        dict.fromkeys(f"{r.role} {r.stable_image}" for r in progress.roles if r.stable_image)
    )
    return f"rolling back: restoring revision {stable}" + (f" ({images})" if images else "")
