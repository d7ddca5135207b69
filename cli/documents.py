"""The JSON documents of `--output json`: one per command, inside the versioned envelope.

Where it sits: commands build their payload here and hand it to cli.output.Output.document. The
shapes are documented in the README ("JSON output") and pinned by golden files in
tests/cli/golden/. Rollout payloads embed the workflow's own models (spec.workflow_io: Progress,
RolloutResult, TeardownResult) as they travel through Temporal, camelCase, so a script reads the
same fields the Temporal UI shows; heartbeat details under `progress.live` are the activities'
own (spec.activity_io, snake_case).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cli.follow import Snapshot


def dump(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json", by_alias=True)


def status_document(snapshot: Snapshot) -> dict[str, Any]:
    """kind RolloutStatus: the run, whether it still runs, the exit code it maps to now, and the
    workflow's progress (while running) or result (once closed)."""
    code = snapshot.exit_code
    return {
        "target": snapshot.target,
        "workflowId": snapshot.workflow_id,
        "runId": snapshot.run_id,
        "workflowType": snapshot.workflow_type,
        "executionStatus": snapshot.status.name,
        "running": snapshot.running,
        "exitCode": None if code is None else int(code),
        "progress": dump(snapshot.progress),
        "result": dump(snapshot.result),
        "notice": snapshot.notice,
    }
