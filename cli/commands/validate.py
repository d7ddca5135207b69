"""`llmd-rollout validate -f SPEC`: check a spec and summarize what it asks of the cluster.

Needs nothing running: no cluster, no Temporal. Every problem is reported at once, one line
each with its YAML path; the ValidationResult document lists them for scripts.
"""

from __future__ import annotations

import argparse
import sys

from cli.exit_codes import ExitCode
from cli.output import Output
from spec import SpecError, load_spec
from spec.summary import render_summary, summarize


async def run(args: argparse.Namespace, output: Output) -> int:
    try:
        spec = load_spec(args.file)
    except SpecError as error:
        output.document(
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
    output.document("ValidationResult", {"valid": True, "file": args.file, **summary.as_dict()})
    if not output.json:
        print(f"{args.file}: valid")
        print(render_summary(summary))
    return ExitCode.SUCCESS
