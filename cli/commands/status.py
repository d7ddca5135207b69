"""`llmd-rollout status TARGET [--watch]`: where the target's current (or last) rollout is.

Once: the view (or RolloutStatus document) and an exit code saying where it stands: 0 running
or succeeded, 2 waiting for approval, 3 rolled back, 4 failed, 5 refused by preflight. With
--watch it follows the run to its end (or to an approval gate) and exits with its code.
`status fleet/NAME` shows a fleet instead (cli/commands/fleet.py).
"""

from __future__ import annotations

import argparse

from cli.commands import fleet
from cli.commands.common import report, watch
from cli.exit_codes import ExitCode
from cli.follow import observe
from cli.output import Output
from cli.session import open_session
from cli.targets import parse_target


async def run(args: argparse.Namespace, output: Output) -> int:
    if fleet.is_fleet_argument(args.target):
        return await fleet.status(args, output)
    target = parse_target(args.target)
    session = await open_session(args)
    if args.watch:
        return await watch(session, output, target, args.run_id)
    snapshot = await observe(session, target, args.run_id)
    report(output, snapshot)
    return snapshot.exit_code or ExitCode.SUCCESS
