"""Loading a rollout spec from YAML: every problem at once, one line each, never a traceback.

Relative local paths in the file (charts, values files, CRD sources, kubeconfig) are resolved
against the spec file's folder, so the spec means the same thing wherever the CLI or worker runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from spec.rollout import RolloutSpec
from spec.validation import Problem, check_spec

_UNION_TAGS = frozenset({"int", "str", "float", "bool", "dict", "list", "none"})


class SpecError(Exception):
    """A spec that cannot be used; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s):"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def load_spec(path: str | Path) -> RolloutSpec:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(source), [Problem("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(str(source), [Problem("", f"cannot be read: {error}")]) from None
    return parse_spec(text, str(source), base_dir=source.resolve().parent)


def parse_spec(text: str, source: str = "<spec>", base_dir: Path | None = None) -> RolloutSpec:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(source, [Problem("", _yaml_problem(error))]) from None
    if not isinstance(document, dict):
        raise SpecError(source, [Problem("", "must be a YAML mapping (a Rollout document)")])
    if base_dir is not None:
        resolve_local_paths(document, base_dir)
    return validate_document(document, source, base_dir)


def validate_document(
    document: dict[str, Any], source: str = "<spec>", base_dir: Path | None = None
) -> RolloutSpec:
    try:
        # Strict here only: payloads elsewhere tolerate fields a newer worker added.
        spec = RolloutSpec.model_validate(document, extra="forbid")
    except ValidationError as error:
        raise SpecError(source, [pydantic_problem(e) for e in error.errors()]) from None
    problems = check_spec(spec, base_dir)
    if problems:
        raise SpecError(source, problems)
    return spec


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"


def pydantic_problem(error: ErrorDetails) -> Problem:
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _UNION_TAGS or "[" in part:
            continue
        else:
            path += f".{part}" if path else part
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "is required"
    elif kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
    else:
        message = f"{_lower_first(error['msg'])}, got {value!r}"
    return Problem(path, message)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def resolve_local_paths(node: Any, base_dir: Path) -> None:
    if isinstance(node, list):
        for item in node:
            resolve_local_paths(item, base_dir)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "chart" and isinstance(value, dict) and isinstance(value.get("path"), str):
            value["path"] = _absolute(value["path"], base_dir)
        elif key == "valuesFiles" and isinstance(value, list):
            node[key] = [_absolute(v, base_dir) if isinstance(v, str) else v for v in value]
        elif key in ("gatewayApiCrds", "inferenceExtensionCrds") and isinstance(value, dict):
            crd_source = value.get("source")
            if isinstance(crd_source, str) and _is_local(crd_source):
                value["source"] = _absolute(crd_source, base_dir)
        elif key == "kubeconfig" and isinstance(value, str):
            node[key] = _absolute(value, base_dir)
        resolve_local_paths(value, base_dir)


def _is_local(source: str) -> bool:
    return source != "builtin" and not source.startswith(("https://", "http://"))


def _absolute(path: str, base_dir: Path) -> str:
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (base_dir / candidate).resolve())
