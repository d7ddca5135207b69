"""Where output goes: JSON for scripts on stdout, text and the live view for people.

Where it sits: every command writes through one `Output`. Off a TTY, or with `--output json`,
stdout carries exactly one JSON document (`document`), the versioned envelope
`{"apiVersion": "llmd-rollout/v1", "kind": ..., ...}`; everything else goes to stderr.
`--output yaml` is the same document as YAML (kubectl's `-o yaml`). On a TTY, text goes to
stdout through rich, coloured unless `--no-color` or NO_COLOR.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import yaml
from rich.console import Console, RenderableType

from cli.errors import CliError

JSON_SCHEMA_VERSION = "llmd-rollout/v1"
# Off a terminal rich would wrap at 80 columns; logs and files take long lines better than cut
# ones (image names, failure reasons).
PLAIN_WIDTH = 160

OutputMode = Literal["auto", "text", "json", "yaml"]
OUTPUT_MODES: tuple[OutputMode, ...] = ("auto", "text", "json", "yaml")


class Output:
    def __init__(self, mode: OutputMode = "auto", *, no_color: bool = False) -> None:
        interactive = sys.stdout.isatty()
        self.yaml = mode == "yaml"
        # `json` means "a document for scripts", whichever its syntax: the commands only ask
        # whether a person or a script reads.
        self.json = self.yaml or mode == "json" or (mode == "auto" and not interactive)
        # The live view redraws in place, which only a terminal can show.
        self.live = not self.json and interactive
        self.console = Console(
            file=sys.stdout,
            no_color=no_color,
            highlight=False,
            soft_wrap=True,
            width=None if interactive else PLAIN_WIDTH,
        )
        self.err = Console(
            file=sys.stderr,
            no_color=no_color,
            highlight=False,
            soft_wrap=True,
            width=None if sys.stderr.isatty() else PLAIN_WIDTH,
        )

    def document(self, kind: str, payload: dict[str, Any]) -> None:
        """The command's document for scripts (JSON or YAML mode only; text mode ignores it)."""
        if self.yaml:
            emit_yaml(kind, payload)
        elif self.json:
            emit_json(kind, payload)

    def show(self, renderable: RenderableType) -> None:
        """The command's answer for people (text mode only)."""
        if not self.json:
            self.console.print(renderable)

    def note(self, message: str) -> None:
        """A line for people that is not the answer: stdout in text mode, stderr in JSON mode."""
        target = self.err if self.json else self.console
        target.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.err.print(f"llmd-rollout: {message}", markup=False, style="yellow")

    def error(self, error: CliError) -> None:
        """One clear line on stderr; in JSON mode also an Error document on stdout."""
        self.document("Error", {"exitCode": int(error.code), "message": error.message})
        self.err.print(f"llmd-rollout: {error.message}", markup=False, style="bold red")


def emit_json(kind: str, payload: dict[str, Any]) -> None:
    document = {"apiVersion": JSON_SCHEMA_VERSION, "kind": kind, **payload}
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def emit_yaml(kind: str, payload: dict[str, Any]) -> None:
    # Through JSON first: the payload is exactly the JSON document's, whatever types it holds.
    document = json.loads(json.dumps({"apiVersion": JSON_SCHEMA_VERSION, "kind": kind, **payload}))
    sys.stdout.write(yaml.safe_dump(document, sort_keys=True, allow_unicode=True))
    sys.stdout.flush()
