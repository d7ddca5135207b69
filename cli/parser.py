"""The verbs of `llmd-rollout` and their flags.

Where it sits: cli.main parses with `build_parser()` and calls the chosen verb's handler
(`args.handler`, from cli/commands/). `-o/--output` and `--no-color` are accepted before or after
the verb (kubectl style); the Temporal connection flags, shared with worker.py through
embedded.connect, go after the verbs that talk to Temporal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from cli.commands import (
    apply,
    control,
    demo,
    listing,
    plan,
    reapply,
    rollback,
    schedule,
    status,
    teardown,
    validate,
)
from cli.completion import SHELLS
from cli.completion import script as completion_script
from cli.exit_codes import EXIT_CODES_HELP, ExitCode
from cli.output import OUTPUT_MODES, Output
from cli.suggest import invalid_choice_hint
from embedded import add_connection_arguments

Handler = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]

TARGET_HELP = "<cluster>/<namespace>/<name>, e.g. clustersim/llm-d-wide-ep/wide-ep"
TARGET_OR_FLEET_HELP = f"{TARGET_HELP}; or fleet/<name> for a fleet"
DESCRIPTION = """Durable rollouts and upgrades of llm-d wide-EP serving stacks on Temporal.

On a terminal you get text and a live view; off one (or with -o json) stdout carries exactly one
JSON document ({"apiVersion": "llmd-rollout/v1", "kind": ...}) and messages go to stderr."""


class UsageError(Exception):
    """A mistake in the command line itself."""


class _Parser(argparse.ArgumentParser):
    # argparse exits 2 on usage errors, which our exit codes reserve for "waiting for approval".
    def error(self, message: str) -> NoReturn:
        raise UsageError(invalid_choice_hint(message))


def _output_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Below the top level the defaults are suppressed, so a flag given before the verb is not
    # overwritten by the verb's default.
    default: object = "auto" if top else argparse.SUPPRESS
    parser.add_argument(
        "-o", "--output", choices=OUTPUT_MODES, default=default,
        help="text for people, json or yaml for scripts (auto: json when stdout is not a "
        "terminal)",
    )
    parser.add_argument(
        "--no-color", action="store_true", default=False if top else argparse.SUPPRESS,
        help="no colours (also when NO_COLOR is set)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llmd-rollout",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _output_flags(parser, top=True)
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    verbs.required = True

    def verb(name: str, help: str, handler: Handler, temporal: bool = True) -> _Parser:
        sub: _Parser = verbs.add_parser(
            name, help=help, description=help[:1].upper() + help[1:] + ".",
            epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _output_flags(sub, top=False)
        if temporal:
            add_connection_arguments(sub)
        sub.set_defaults(handler=handler)
        return sub

    sub = verb("validate", "check a rollout spec and summarize what it asks of the cluster",
               validate.run, temporal=False)
    sub.add_argument("-f", "--file", required=True, help="rollout spec YAML")

    sub = verb("plan", "show what a rollout of the spec would change, without changing it "
               "(exit 0: nothing, 7: changes)",
               plan.run)
    sub.add_argument("-f", "--file", required=True, help="rollout spec YAML")
    sub.add_argument("--kubeconfig", help="kubeconfig of the cluster (default: the spec's "
                     "target.kubeconfig, then $KUBECONFIG, then ~/.kube/config)")
    sub.add_argument("--context", help="kubeconfig context (default: the spec's, then current)")
    sub.add_argument("--diff", action="store_true",
                     help="also show the full diff of every object that changes")

    sub = verb("apply", "start a rollout of the spec (install or upgrade)", apply.run)
    sub.add_argument("-f", "--file", required=True, help="rollout spec YAML (or a kind: Fleet)")
    sub.add_argument("--wait", action="store_true",
                     help="follow the rollout to its end (or an approval gate) and exit with its "
                     "code")
    sub.add_argument("--reason", help="why, recorded with the rollout")

    sub = verb("status", "show the current or last rollout of a target", status.run)
    sub.add_argument("target", help=TARGET_OR_FLEET_HELP)
    sub.add_argument("-w", "--watch", action="store_true",
                     help="follow it to its end (or an approval gate) and exit with its code")
    sub.add_argument("--run-id", help="a particular run (default: the latest)")

    sub = verb("list", "list running and recent rollouts, teardowns and scheduled upgrades",
               listing.run_list)
    sub.add_argument("--target", help=f"only this target ({TARGET_HELP})")
    sub.add_argument("--running", action="store_true", help="only running ones")
    sub.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    sub = verb("history", "past rollouts of a target: revisions, images, outcomes, reasons",
               listing.run_history)
    sub.add_argument("target", help=TARGET_HELP)
    sub.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    sub = verb("approve", "pass the gate the rollout waits at for approval", control.run)
    sub.add_argument("target", help=TARGET_OR_FLEET_HELP)
    sub.add_argument("--gate", help="the gate expected to be waiting (refused if another is)")
    sub.add_argument("--note", help="recorded with the approval")

    sub = verb("pause", "hold the rollout before its next step", control.run)
    sub.add_argument("target", help=TARGET_HELP)
    sub.add_argument("--reason", help="recorded with the pause")

    sub = verb("resume", "continue a paused rollout", control.run)
    sub.add_argument("target", help=TARGET_HELP)

    sub = verb("abort", "stop the rollout and roll back", control.run)
    sub.add_argument("target", help=TARGET_OR_FLEET_HELP)
    sub.add_argument("--reason", help="recorded with the abort")
    sub.add_argument("--wait", action="store_true",
                     help="follow the rollback to its end and exit with its code")

    sub = verb("rollback", "roll the target out again at an earlier revision that served",
               rollback.run)
    sub.add_argument("target", help=TARGET_HELP)
    sub.add_argument("--to", metavar="REVISION",
                     help="the revision (or a prefix of it; default: the previous one)")
    sub.add_argument("--wait", action="store_true", help="follow it to its end")

    sub = verb("set-image", "roll out the target's current spec with a new vLLM image",
               reapply.run_set_image)
    sub.add_argument("target", help=TARGET_HELP)
    sub.add_argument("image", help="the image, e.g. ghcr.io/llm-d/llm-d:v0.2.1")
    sub.add_argument("--role", choices=("prefill", "decode"),
                     help="only this role (default: both, dropping per-role images)")
    sub.add_argument("--wait", action="store_true", help="follow it to its end")

    sub = verb("retry", "run the target's last failed or aborted rollout again", reapply.run_retry)
    sub.add_argument("target", help=TARGET_HELP)
    sub.add_argument("--wait", action="store_true", help="follow it to its end")

    sub = verb("schedule", "scheduled upgrades of a target", schedule.run, temporal=False)
    _schedule_verbs(sub)

    sub = verb("teardown", "remove a target's stack in reverse order", teardown.run)
    sub.add_argument("target", help=TARGET_HELP)
    sub.add_argument("-f", "--file",
                     help="the target's spec (default: the spec of its latest rollout)")
    sub.add_argument("--include-gateway-provider", action="store_true",
                     help="also uninstall the gateway provider (other tenants may use it)")
    sub.add_argument("--include-dependencies", action="store_true",
                     help="also remove the LWS controller and the CRDs (cluster-wide)")
    sub.add_argument("--keep-namespace", action="store_true", help="leave the namespace")
    sub.add_argument("--wait", action="store_true", help="follow it to its end")

    sub = verb("demo", "start Temporal, a simulated 2-node H200 cluster and a worker; roll out "
               "examples/demo.yaml, verify it, upgrade it decode first", demo.run,
               temporal=False)
    sub.add_argument("--exit", action="store_true",
                     help="stop everything at the end instead of waiting for Ctrl-C")
    sub.add_argument("--time-scale", type=float, default=demo.DEFAULT_TIME_SCALE,
                     help="the simulated cluster's time scale: 0.01 turns a 10-minute model "
                     f"load into 6 s (default {demo.DEFAULT_TIME_SCALE})")
    sub.add_argument("--spec", default=None,
                     help="the spec to roll out (default: examples/demo.yaml)")

    sub = verb("completion", "print a shell completion script: source <(llmd-rollout "
               "completion bash)", _completion, temporal=False)
    sub.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    return parser


async def _completion(args: argparse.Namespace, output: Output) -> int:
    """The script, whatever -o says: a shell reads it, not a person or a JSON parser."""
    sys.stdout.write(completion_script(build_parser(), args.shell))
    return ExitCode.SUCCESS


def _schedule_verbs(parser: _Parser) -> None:
    verbs = parser.add_subparsers(
        dest="schedule_command", metavar="ACTION", parser_class=_Parser
    )
    verbs.required = True

    def action(name: str, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = verbs.add_parser(name, help=help, description=help)
        _output_flags(sub, top=False)
        add_connection_arguments(sub)
        return sub

    create = action("create", "create a target's (or a fleet's) upgrade schedule")
    create.add_argument("target", help=TARGET_OR_FLEET_HELP)
    create.add_argument("-f", "--file", help="the desired spec (or fleet), stored in the schedule")
    create.add_argument("--worker-path",
                        help="instead: a spec file the worker reads at each firing")
    create.add_argument("--cron", action="append",
                        help="when to fire, a cron expression in UTC (repeatable)")
    create.add_argument("--every", help="or an interval, e.g. 24h")
    create.add_argument("--window-days", help="maintenance window days, e.g. sat,sun")
    create.add_argument("--window-start", help="maintenance window start (UTC), e.g. 02:00")
    create.add_argument("--window-duration", help="maintenance window length, e.g. 4h")
    create.add_argument("--paused", action="store_true", help="create it paused")
    create.add_argument("--note", help="a note shown with the schedule")
    create.add_argument("--roll-out-unchanged", action="store_true",
                        help="roll out at every firing, even when the desired spec already runs "
                        "(default: such a firing ends 'unchanged', without a rollout)")
    action("list", "list the upgrade schedules")
    for name, help in (
        ("describe", "show a target's upgrade schedule: next and recent runs"),
        ("pause", "pause a target's upgrade schedule"),
        ("unpause", "unpause a target's upgrade schedule"),
        ("trigger", "fire a target's upgrade schedule now (skipped while one runs)"),
        ("delete", "delete a target's upgrade schedule (a running upgrade goes on)"),
    ):
        sub = action(name, help)
        sub.add_argument("target", help=TARGET_OR_FLEET_HELP)
        if name in ("pause", "unpause"):
            sub.add_argument("--note", help="why, shown with the schedule")
