"""LeaderWorkerSet rolling-update arithmetic (v0.7.0 semantics), without I/O.

The LWS controller drives its leader StatefulSet through two numbers: replicas (with surge) and
the rolling-update partition. Groups are replaced from the highest index down; the partition only
falls as the groups above it become updated and ready, by at most maxUnavailable + maxSurge at a
time, and never below `spec...partition`; surge groups are released as the update completes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupState:
    ready: bool
    updated: bool
    exists: bool = True


@dataclass(frozen=True)
class RolloutPlan:
    replicas: int
    partition: int


def plan_rollout(
    *,
    lws_replicas: int,
    max_unavailable: int,
    max_surge: int,
    partition: int,
    leader_sts_exists: bool,
    template_changed: bool,
    sts_replicas: int,
    sts_partition: int,
    groups: list[GroupState],
) -> RolloutPlan:
    """Leader StatefulSet replicas and partition for this reconcile.

    `groups` covers indexes 0..sts_replicas-1 (surge groups included).
    """
    burst = lws_replicas + max_surge

    def bounded(value: int) -> int:
        return max(value, partition)

    if not leader_sts_exists:
        return RolloutPlan(lws_replicas, bounded(0))
    if template_changed:
        # A new revision: nothing rolls in this step, surge groups come up with the new template.
        return RolloutPlan(burst, bounded(lws_replicas))
    considered = groups[partition:lws_replicas]
    if len(groups) >= lws_replicas and all(g.updated and g.ready for g in considered):
        return RolloutPlan(lws_replicas, bounded(0))
    continuous = 0
    for group in reversed(groups):
        if not (group.ready and group.updated):
            break
        continuous += 1
    step = max(1, max_unavailable + max_surge)
    stepped = max(0, sts_replicas - continuous - step)
    new_partition = min(stepped, sts_partition)
    unready = sum(1 for g in groups[:lws_replicas] if not (g.ready and g.updated))
    replicas = burst
    if unready <= max_surge:
        replicas = lws_replicas + max(0, unready - 1)
    return RolloutPlan(replicas, bounded(new_partition))
