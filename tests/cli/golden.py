"""Golden files of the CLI's output: volatile parts normalised, rewritten on request.

What changes from run to run (run IDs, times, durations, ports, pod IPs, revision hashes) is
replaced by a placeholder before comparing; the rest is the documented output. Run with
LLMD_UPDATE_GOLDEN=1 to rewrite the files after an intended change, and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_ENV = "LLMD_UPDATE_GOLDEN"

REPO = Path(__file__).resolve().parents[2]

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(re.escape(str(REPO))), "<repo>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<time>"),
    (re.compile(r"\b127\.\d+\.\d+\.\d+(:\d+)?"), "<address>"),
    (re.compile(r"/tmp/[^\s\"']+"), "<tmp>"),
    (re.compile(r"\b\d+(\.\d+)?(s|ms)\b"), "<dur>"),
    (re.compile(r"\b\d+m\d\ds\b"), "<dur>"),
    (re.compile(r"\b\d+h\d\dm\b"), "<dur>"),
    # Ages (`45s`, `12m`, `3h`) are durations too: one placeholder, whichever the unit.
    (re.compile(r"\b\d+[mhd]\b"), "<dur>"),
    (re.compile(r"\b[0-9a-f]{10,16}\b"), "<hash>"),
    # A shared piece already current reads "made current <dur> ago for T" within the cluster
    # workflow's freshness window and "N CRDs established, already current" or "already
    # current, revision N" after a check: which one depends on how long the install before took.
    (re.compile(r"already current: made current <dur> ago for [\w./-]+"), "<already current>"),
    (re.compile(r"\d+ CRDs established, already current"), "<already current>"),
    (re.compile(r"already current, revision \d+"), "<already current>"),
)
# JSON keys whose values vary from run to run whatever they hold.
_VOLATILE_KEYS = re.compile(
    r"(Seconds|seconds|At|_at|Time|time|elapsed.*|api_?[rR]equests|resourceVersion|"
    r"resource_version|attempt)$"
)


def normalise_text(text: str) -> str:
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    # Table columns move with the width of what was replaced.
    lines = [re.sub(r"[ \t]+", " ", line).rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip() + "\n"


def normalise_json(document: Any) -> Any:
    if isinstance(document, dict):
        return {
            key: "<volatile>" if _VOLATILE_KEYS.search(key) and value is not None
            else normalise_json(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [normalise_json(item) for item in document]
    if isinstance(document, str):
        return normalise_text(document).rstrip("\n")
    return document


def assert_golden(name: str, actual: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get(UPDATE_ENV):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.is_file(), f"golden file {path} is missing; create it with {UPDATE_ENV}=1"
    expected = path.read_text()
    assert actual == expected, (
        f"output differs from {path} (rerun with {UPDATE_ENV}=1 and review the diff)"
    )


def assert_golden_json(name: str, document: Any) -> None:
    assert_golden(name, json.dumps(normalise_json(document), indent=2, sort_keys=True) + "\n")


def assert_golden_text(name: str, text: str) -> None:
    assert_golden(name, normalise_text(text))
