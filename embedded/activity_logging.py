"""Every log line of an activity carries its workflow ID, run ID, activity name and target.

Where it sits: worker.py registers `ActivityLogContext` as a worker interceptor. Around each
activity it binds those four values into structlog's context variables, which the logging setup
(embedded/logging.py) merges into every line, ours and the SDK's `activity.logger`'s alike. Sync
activities run on threads in a copy of this context (the SDK copies it), so they get them too.
The target is read by shape, not type, so this module knows nothing of rollouts: an input's
`spec.target_id`, else its `target`'s `cluster`/`namespace`.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)


class ActivityLogContext(Interceptor):
    def __init__(self) -> None:
        # The SDK's activity logger otherwise appends its info dict to every message; the bound
        # fields carry it now, as keys a log query can filter on.
        activity.logger.activity_info_on_message = False

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindActivityContext(next)


class _BindActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        context: dict[str, str] = {
            "workflow_id": info.workflow_id or "",
            "run_id": info.workflow_run_id or "",
            "activity": info.activity_type,
        }
        target = target_of(input.args)
        if target is not None:
            context["target"] = target
        with structlog.contextvars.bound_contextvars(**context):
            return await self.next.execute_activity(input)


def target_of(args: Any) -> str | None:
    """The rollout target an activity's first argument names, if it names one."""
    if not args:
        return None
    first = args[0]
    spec = getattr(first, "spec", None)
    target_id = getattr(spec, "target_id", None)
    if isinstance(target_id, str):
        return target_id
    target = getattr(first, "target", None)
    cluster, namespace = getattr(target, "cluster", None), getattr(target, "namespace", None)
    if isinstance(cluster, str) and isinstance(namespace, str):
        return f"{cluster}/{namespace}"
    return None
