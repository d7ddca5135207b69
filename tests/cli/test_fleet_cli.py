"""The fleet through the CLI as a user runs it (a process, off a TTY): `apply -f fleet.yaml`,
`status fleet/NAME` (exit 2 at the gate between waves), `approve fleet/NAME`, `status --watch`.

The demo cluster holds one stack: wave 1 installs it; wave 2's target (another namespace on the
same cluster) is refused by its own preflight for capacity, so the fleet stops in wave 2 and, by
`rollbackWave`, returns nothing of wave 1 (exit 3), with nothing changed for wave 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.exit_codes import ExitCode
from spec.loader import resolve_local_paths
from tests.cli.conftest import EXAMPLES, CliRun

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Runner = Callable[..., Any]


def fleet_file(folder: Path) -> Path:
    rollout = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    resolve_local_paths(rollout, EXAMPLES)
    del rollout["target"]
    rollout["metadata"]["name"] = "cli-fleet"
    document = {
        "apiVersion": "llmd-rollout.llm-d.ai/v1alpha1",
        "kind": "Fleet",
        "metadata": {"name": "cli-fleet"},
        "rollout": rollout,
        "targets": [
            {"name": "first", "cluster": "clustersim", "namespace": "fleet-first"},
            {"name": "second", "cluster": "clustersim", "namespace": "fleet-second"},
        ],
        "waves": [{"name": "canary", "targets": ["first"]},
                  {"name": "rest", "targets": ["second"]}],
        "betweenWaves": {"approval": True},
        "onFailure": "rollbackWave",
    }
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_a_fleet_is_applied_watched_approved_and_stops_in_wave_2(
    cli: Runner, tmp_path: Path
) -> None:
    started: CliRun = await cli("apply", "-f", str(fleet_file(tmp_path)))
    assert started.code == ExitCode.SUCCESS, str(started)
    assert started.json()["workflowId"] == "fleet/cli-fleet"

    waiting: CliRun = await cli("status", "fleet/cli-fleet")
    for _ in range(120):
        if waiting.code != ExitCode.SUCCESS:
            break
        waiting = await cli("status", "fleet/cli-fleet")
    assert waiting.code == ExitCode.WAITING_FOR_APPROVAL, str(waiting)
    document = waiting.json()
    assert document["gate"]["name"] == "before/rest"
    assert [t["state"] for w in document["waves"] for t in w["targets"]] == [
        "succeeded", "pending",
    ]
    text: CliRun = await cli("status", "fleet/cli-fleet", "-o", "text")
    assert "gate before/rest: waiting for approval" in text.out, str(text)

    refused: CliRun = await cli("pause", "fleet/cli-fleet")
    assert refused.code == ExitCode.USAGE and "approve or abort" in refused.err, str(refused)
    approved: CliRun = await cli("approve", "fleet/cli-fleet", "--note", "canary fine")
    assert approved.code == ExitCode.SUCCESS, str(approved)
    assert "gate before/rest approved" in approved.json()["message"]

    finished: CliRun = await cli("status", "fleet/cli-fleet", "--watch", "-o", "text")
    assert finished.code == ExitCode.ROLLED_BACK, str(finished)
    assert "second" in finished.out and "InsufficientCapacity" in finished.out, finished.out
    assert "approved by" in finished.out and ": canary fine" in finished.out
    print(finished.out)

    unknown: CliRun = await cli("status", "fleet/no-such-fleet")
    assert unknown.code == ExitCode.USAGE and "no fleet no-such-fleet" in unknown.err
