"""What a spec asks of the cluster, role by role: the figures `llmd-rollout validate` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spec.rollout import RoleName, RolloutSpec


@dataclass(frozen=True)
class RoleSummary:
    role: RoleName
    groups: int
    pods_per_group: int
    pods: int
    gpus_per_pod: int
    data_parallel_local: int
    data_parallel_size: int
    tensor_parallel: int
    gpus: int
    image: str


@dataclass(frozen=True)
class SpecSummary:
    target: str
    model: str
    roles: list[RoleSummary]
    pods: int
    gpus: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(spec: RolloutSpec) -> SpecSummary:
    service = spec.model_service
    roles = []
    for name in spec.strategy.role_order:
        role = service.role(name)
        roles.append(
            RoleSummary(
                role=name,
                groups=role.replicas,
                pods_per_group=role.group_size,
                pods=role.pods,
                gpus_per_pod=role.gpus_per_pod,
                data_parallel_local=role.data_parallel_local,
                data_parallel_size=role.data_parallel_size,
                tensor_parallel=role.tensor_parallel,
                gpus=role.gpus,
                image=service.image_for(name),
            )
        )
    return SpecSummary(
        target=spec.target_id,
        model=service.model_name,
        roles=roles,
        pods=sum(r.pods for r in roles),
        gpus=sum(r.gpus for r in roles),
    )


def render_summary(summary: SpecSummary) -> str:
    header = ("role", "groups", "pods/group", "pods", "GPUs/pod", "DP size (local x pods)", "GPUs")
    rows: list[tuple[str, ...]] = [
        (
            r.role,
            str(r.groups),
            str(r.pods_per_group),
            str(r.pods),
            str(r.gpus_per_pod),
            f"{r.data_parallel_size} ({r.data_parallel_local} x {r.pods_per_group})",
            str(r.gpus),
        )
        for r in summary.roles
    ]
    rows.append(("total", "", "", str(summary.pods), "", "", str(summary.gpus)))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"target {summary.target}", f"model  {summary.model}", ""]
    for row in [header, *rows]:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines)
