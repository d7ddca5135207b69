"""Parse, dispatch, and the error boundary: every failure a user can meet ends as one clear
line and an exit code, never a traceback.

Where it sits: starter.py's `main` and `run` are these. Errors the layers below raise are
translated by cli.errors.explain; anything else is a bug, reported as one line naming
LLMD_DEBUG=1, which shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from cli.errors import CliError, explain
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.parser import Handler, UsageError, build_parser
from embedded import ConnectionSettingsError, exit_now, settings_from_args

INTERRUPTED = 130
DEBUG_ENV = "LLMD_DEBUG"


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        end = " " if str(error).endswith("?") else ". "
        print(f"llmd-rollout: {error}{end}Run 'llmd-rollout --help' for usage.", file=sys.stderr)
        return ExitCode.USAGE
    output = Output(args.output, no_color=args.no_color)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(args, output))
    except KeyboardInterrupt:
        target = getattr(args, "target", None)
        follow = f"; follow it again with 'llmd-rollout status {target} --watch'" if target else ""
        output.warn(f"interrupted: nothing was stopped on the Temporal side{follow}")
        return INTERRUPTED
    except Exception as error:
        explained = explain(
            error, address=_address(args), target=getattr(args, "target", "") or ""
        )
        if explained is None:
            if os.environ.get(DEBUG_ENV):
                raise
            explained = CliError(
                f"internal error: {type(error).__name__}: {error} (a bug: please report it; "
                f"{DEBUG_ENV}=1 shows the traceback)"
            )
        output.error(explained)
        return explained.code


def _address(args: argparse.Namespace) -> str:
    try:
        return settings_from_args(args).address
    except ConnectionSettingsError:
        return "the configured address"


def main() -> NoReturn:
    try:
        code = run()
    except KeyboardInterrupt:
        code = INTERRUPTED
    exit_now(code)
