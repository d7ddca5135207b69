"""`llmd-rollout teardown TARGET`: remove a target's stack in reverse order.

The spec comes from `-f SPEC` or, without it, from the target's latest rollout in Temporal (its
RolloutInput). The teardown runs under the target's workflow ID, so never beside a rollout of it
(exit 6 while one runs). The gateway provider and the cluster-wide dependencies stay unless asked
for, since other tenants may use them.
"""

from __future__ import annotations

import argparse

from cli.commands.common import (
    latest_rollout,
    load_spec_file,
    requester,
    rollout_input_of,
    watch,
)
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.session import Session, open_session
from cli.targets import parse_target
from rollouts import start_teardown
from spec import RolloutSpec
from spec.workflow_io import TeardownInput


async def run(args: argparse.Namespace, output: Output) -> int:
    target = parse_target(args.target)
    session = await open_session(args)
    if args.file:
        spec = load_spec_file(args.file)
        if spec.target_id != target:
            raise CliError(
                f"{args.file} describes {spec.target_id}, not {target}; pass the spec of the "
                "target to tear down"
            )
    else:
        spec = await _last_rolled_out_spec(session, target)
    request = TeardownInput(
        spec=spec,
        include_gateway_provider=args.include_gateway_provider,
        include_dependencies=args.include_dependencies,
        keep_namespace=args.keep_namespace,
        requested_by=f"cli:{requester()}",
    )
    handle = await start_teardown(session.client, request, task_queue=session.task_queue)
    run_id = handle.result_run_id or handle.first_execution_run_id or ""
    if args.wait:
        output.note(f"teardown of {target} started: workflow {handle.id}, run {run_id}")
        return await watch(session, output, target, run_id)
    output.document(
        "TeardownStarted", {"target": target, "workflowId": handle.id, "runId": run_id}
    )
    output.note(f"teardown of {target} started: workflow {handle.id}, run {run_id}")
    if not output.json:
        output.note(f"follow it: llmd-rollout status {target} --watch")
    return ExitCode.SUCCESS


async def _last_rolled_out_spec(session: Session, target: str) -> RolloutSpec:
    execution = await latest_rollout(session, target)
    if execution is not None:
        return (await rollout_input_of(session, execution)).spec
    raise CliError(
        f"no rollout of {target} is recorded in Temporal to take the spec from; "
        "pass it with -f SPEC"
    )
