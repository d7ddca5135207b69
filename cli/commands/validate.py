"""`llmd-rollout validate -f SPEC`: check a spec and summarize what it asks of the cluster.

Needs nothing running: no cluster, no Temporal. Every problem is reported at once, one line
each with its YAML path; the ValidationResult document lists them for scripts. After the spec
itself, every local chart is rendered with its values (helmcli.render, helm template), so
a value the chart's schema or templates refuse is reported here, before any rollout.
"""

from __future__ import annotations

import argparse
import sys

from cli.exit_codes import ExitCode
from cli.output import Output
from helmcli.render import ChartRender, problems_of, render_charts
from spec import SpecError, load_spec
from spec.summary import render_summary, summarize


async def run(args: argparse.Namespace, output: Output) -> int:
    try:
        spec = load_spec(args.file)
        charts = await render_charts(spec)
        problems = problems_of(charts)
        if problems:
            raise SpecError(args.file, problems)
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
    output.document(
        "ValidationResult",
        {"valid": True, "file": args.file, **summary.as_dict(),
         "charts": [chart.as_dict() for chart in charts]},
    )
    if not output.json:
        print(f"{args.file}: valid")
        print(render_summary(summary))
        print(_charts_text(charts))
    return ExitCode.SUCCESS


def _charts_text(charts: list[ChartRender]) -> str:
    lines = ["", "charts"]
    lines += [
        f"  {chart.release:<16} {chart.path:<40} {chart.note or chart.outcome}"
        for chart in charts
    ]
    return "\n".join(lines)
