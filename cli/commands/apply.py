"""`llmd-rollout apply -f SPEC [--wait]`: start a rollout (install or upgrade) of the spec's target.

The start goes through rollouts.starting, the one start path with the per-target guard: while a
rollout or teardown of the target runs, the start is refused (exit 6) naming the running
workflow. Without --wait the command returns once Temporal has the rollout; with --wait it
follows it like `status --watch`. A `kind: Fleet` file starts the fleet instead
(cli/commands/fleet.py).
"""

from __future__ import annotations

import argparse

from cli.commands import fleet
from cli.commands.common import load_spec_file, requester, watch
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.session import open_session
from manifests import spec_revision
from rollouts import start_rollout
from spec.fleet import is_fleet_document


async def run(args: argparse.Namespace, output: Output) -> int:
    if is_fleet_document(args.file):
        return await fleet.apply(args, output)
    spec = load_spec_file(args.file)
    session = await open_session(args)
    handle = await start_rollout(
        session.client,
        spec,
        task_queue=session.task_queue,
        requested_by=f"cli:{requester()}",
        reason=args.reason or "",
    )
    target = spec.target_id
    run_id = handle.result_run_id or handle.first_execution_run_id or ""
    if args.wait:
        output.note(f"rollout of {target} started: workflow {handle.id}, run {run_id}")
        return await watch(session, output, target, run_id)
    output.document(
        "RolloutStarted",
        {
            "target": target,
            "workflowId": handle.id,
            "runId": run_id,
            "revision": spec_revision(spec),
            "file": args.file,
        },
    )
    output.note(f"rollout of {target} started: workflow {handle.id}, run {run_id}")
    if not output.json:
        output.note(f"follow it: llmd-rollout status {target} --watch")
    return ExitCode.SUCCESS
