"""The small JSONPath subset CRD printer columns and scale subresources use.

Supported: `.field`, `['field']`, `[n]`, `[*]` and filters `[?(@.a.b=="x")]` / `!=`.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_$-]+)
      |\[(?P<index>-?\d+)\]
      |\[(?P<star>\*)\]
      |\[['"](?P<quoted>[^'"]+)['"]\]
      |\[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_-]+)+)\s*(?P<op>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\)\]
    """,
    re.VERBOSE,
)


def _steps(path: str) -> list[tuple[str, Any]] | None:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    steps: list[tuple[str, Any]] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            return None
        if match.group("field") is not None:
            steps.append(("field", match.group("field")))
        elif match.group("quoted") is not None:
            steps.append(("field", match.group("quoted")))
        elif match.group("index") is not None:
            steps.append(("index", int(match.group("index"))))
        elif match.group("star") is not None:
            steps.append(("star", None))
        else:
            value = match.group("fval").strip("\"'")
            steps.append(("filter", (match.group("fpath")[1:].split("."), match.group("op"),
                                     value)))
        position = match.end()
    return steps


def _dig(node: Any, fields: list[str]) -> Any:
    for name in fields:
        if not isinstance(node, dict):
            return None
        node = node.get(name)
    return node


def evaluate(obj: Any, path: str) -> list[Any]:
    """Every value `path` selects in `obj` (empty when nothing matches)."""
    steps = _steps(path)
    if steps is None:
        return []
    nodes = [obj]
    for kind, argument in steps:
        following: list[Any] = []
        for node in nodes:
            named = kind == "field" and isinstance(node, dict) and argument in node
            indexed = kind == "index" and isinstance(node, list) and \
                -len(node) <= argument < len(node)
            if named or indexed:
                following.append(node[argument])
            elif kind == "star":
                if isinstance(node, list):
                    following.extend(node)
                elif isinstance(node, dict):
                    following.extend(node.values())
            elif kind == "filter" and isinstance(node, list):
                fields, op, expected = argument
                for item in node:
                    actual = _dig(item, fields)
                    equal = actual is not None and str(actual) == expected
                    if equal == (op == "=="):
                        following.append(item)
        nodes = following
    return nodes


def first(obj: Any, path: str) -> Any:
    found = evaluate(obj, path)
    return found[0] if found else None
