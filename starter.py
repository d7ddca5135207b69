"""The `llmd-rollout` command line: the face of the project for people and for scripts.

    llmd-rollout apply -f examples/demo.yaml --wait
    llmd-rollout status clustersim/llm-d-wide-ep/wide-ep --watch
    llmd-rollout demo

The verbs live in the cli package (cli.parser lists them, cli/commands/ implements them). Off a
TTY, or with `--output json`, stdout carries only JSON (a versioned shape) and messages go to
stderr. Exit codes are part of the interface (ExitCode, the README and `--help`).
"""

from __future__ import annotations

from cli.exit_codes import EXIT_CODES_HELP, ExitCode
from cli.main import main, run
from cli.output import JSON_SCHEMA_VERSION

__all__ = ["EXIT_CODES_HELP", "JSON_SCHEMA_VERSION", "ExitCode", "main", "run"]

if __name__ == "__main__":
    main()
