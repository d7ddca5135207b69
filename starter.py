"""The `llmd-rollout` command line: the face of the project for people and for scripts.

Off a TTY, or with `--output json`, stdout carries only JSON (a versioned shape) and messages go
to stderr. Exit codes are part of the interface (see EXIT_CODES and the README).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any, NoReturn

from embedded.process_exit import exit_now
from spec import SpecError, load_spec
from spec.summary import render_summary, summarize

JSON_SCHEMA_VERSION = "llmd-rollout/v1"


class ExitCode(IntEnum):
    SUCCESS = 0
    USAGE = 1
    WAITING_FOR_APPROVAL = 2
    ROLLED_BACK = 3
    FAILED = 4
    REFUSED = 5
    ALREADY_RUNNING = 6


EXIT_CODES_HELP = """exit codes:
  0  success
  1  usage or connection error
  2  waiting for approval
  3  failed and rolled back
  4  failed without rollback
  5  refused (invalid spec or preflight)
  6  a rollout of this target is already running"""


class UsageError(Exception):
    """A mistake in the command line itself."""


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on usage errors, which our exit codes reserve for "waiting for approval".
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _wants_json(args: argparse.Namespace) -> bool:
    if args.output == "json":
        return True
    if args.output == "text":
        return False
    return not sys.stdout.isatty()


def emit_json(kind: str, payload: dict[str, Any]) -> None:
    document = {"apiVersion": JSON_SCHEMA_VERSION, "kind": kind, **payload}
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.file)
    except SpecError as error:
        if _wants_json(args):
            emit_json(
                "ValidationResult",
                {
                    "valid": False,
                    "file": args.file,
                    "problems": [{"path": p.path, "message": p.message} for p in error.problems],
                },
            )
        print(error.render(), file=sys.stderr)
        return ExitCode.REFUSED
    summary = summarize(spec)
    if _wants_json(args):
        emit_json("ValidationResult", {"valid": True, "file": args.file, **summary.as_dict()})
    else:
        print(f"{args.file}: valid")
        print(render_summary(summary))
    return ExitCode.SUCCESS


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llmd-rollout",
        description="Durable rollouts and upgrades of llm-d wide-EP serving stacks on Temporal.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("auto", "text", "json"),
        default="auto",
        help="text for people, json for scripts (auto: json when stdout is not a terminal)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    validate = commands.add_parser(
        "validate", help="check a rollout spec and summarize what it asks of the cluster"
    )
    validate.add_argument("-f", "--file", required=True, help="rollout spec YAML")
    validate.set_defaults(handler=cmd_validate)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"llmd-rollout: {error}. Run 'llmd-rollout --help' for usage.", file=sys.stderr)
        return ExitCode.USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def main() -> NoReturn:
    try:
        code = run()
    except KeyboardInterrupt:
        code = 130
    exit_now(code)


if __name__ == "__main__":
    main()
