"""Render every chart of a spec with its values before anything changes: bad values are refused.

Where it sits: `validate` and `plan` (cli/commands) call `render_charts` right after loading a
spec, and the preflight activity calls it before any change to the cluster, so a spec started
directly through Temporal is refused too. For each Helm release with a local chart it runs
`helm template` (helmcli.runner.HelmRunner, the one helm runner) with the release's values files
and inline values, so the chart's `values.schema.json` and its templates judge them. A schema or
template error becomes one Problem per line naming the spec path of the offending value, e.g.
`infra.values.gateway.listeners[0].port: minimum: got -1, want 1`. Remote charts (repository or
OCI) are not fetched: they are reported as not rendered, never as a failure.

A verdict is kept per (chart content, values, release, namespace, helm binary) for the life of
the process: a worker re-checks the same release on every rollout of a target, and fifty
concurrent rollouts each starting three `helm template` processes starved the worker's
preflights (bench/concurrency.py). Only verdicts (rendered or refused) are kept, never "helm
did not run".
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from helmcli.commands import chart_args, last_lines, release_digest, user_values
from helmcli.runner import HelmError, HelmRunner, helm_binary, private_values_file
from spec.rollout import HelmRelease, RolloutSpec
from spec.validation import Problem
from spec.yaml_documents import load_document

TEMPLATE_TIMEOUT_SECONDS = 60.0
# Helm v4 and v3.18+: "- at '/gateway/listeners/0/port': minimum: got -1, want 1".
_SCHEMA_LINE = re.compile(r"^- at '(?P<pointer>[^']*)': (?P<message>.+)$")
# Helm v3 before 3.18 (gojsonschema): "- gateway.listeners.0.port: Must be greater than ...".
_LEGACY_SCHEMA_LINE = re.compile(r"^- (?P<dotted>\(root\)|[^\s:]+): (?P<message>.+)$")

Outcome = Literal["rendered", "refused", "remote", "not-rendered"]
# Verdicts kept (least recently used dropped first).
KEPT_VERDICTS = 512


@dataclass(frozen=True)
class ChartRender:
    """How one release's chart fared: rendered, refused (with problems) or not rendered (why)."""

    path: str
    release: str
    outcome: Outcome
    note: str = ""
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "release": self.release, "outcome": self.outcome,
                "note": self.note}


def spec_releases(spec: RolloutSpec) -> list[tuple[str, HelmRelease, str]]:
    """Every Helm release of the spec: (its YAML path, the release, the namespace it goes to)."""
    found: list[tuple[str, HelmRelease]] = []
    lws = spec.dependencies.leader_worker_set.release
    if lws is not None:
        found.append(("dependencies.leaderWorkerSet.release", lws))
    found += [
        (f"gatewayProvider.releases[{index}]", release)
        for index, release in enumerate(spec.gateway_provider.releases)
    ]
    found.append(("infra", spec.infra))
    return [(path, release, release.namespace or spec.target.namespace)
            for path, release in found]


async def render_charts(spec: RolloutSpec) -> list[ChartRender]:
    """Render every release's chart with its values, concurrently (each takes ~0.1 s)."""
    return list(
        await asyncio.gather(
            *(render_release(path, release, namespace)
              for path, release, namespace in spec_releases(spec))
        )
    )


def problems_of(renders: list[ChartRender]) -> list[Problem]:
    return [problem for render in renders for problem in render.problems]


async def render_release(path: str, release: HelmRelease, namespace: str) -> ChartRender:
    name = release.release_name
    if not release.chart.path:
        return ChartRender(path, name, "remote", "not rendered: remote chart")
    try:
        values = user_values(release)
    except (OSError, ValueError) as error:
        problem = Problem(f"{path}.valuesFiles", f"cannot be read: {error}")
        return ChartRender(path, name, "refused", problems=[problem])
    key = (release_digest(release, values), name, namespace, helm_binary(), path)
    if key in _VERDICTS:
        _VERDICTS.move_to_end(key)
        return _VERDICTS[key]
    try:
        with private_values_file(values) as values_file:
            done = await HelmRunner().run(
                template_args(release, namespace, str(values_file)),
                TEMPLATE_TIMEOUT_SECONDS,
                f"helm template {name}",
            )
    except HelmError as error:
        # No helm, or helm hung: nothing says the values are wrong, so the spec is not refused.
        return ChartRender(path, name, "not-rendered", f"not rendered: {error}")
    if done.returncode == 0:
        verdict = ChartRender(path, name, "rendered")
    else:
        verdict = ChartRender(
            path, name, "refused", problems=render_problems(path, release, done.stderr)
        )
    _VERDICTS[key] = verdict
    if len(_VERDICTS) > KEPT_VERDICTS:
        _VERDICTS.popitem(last=False)
    return verdict


_VERDICTS: OrderedDict[tuple[str, str, str, str, str], ChartRender] = OrderedDict()


def template_args(release: HelmRelease, namespace: str, values_file: str) -> list[str]:
    """`helm template` as `helm upgrade --install` would render: values files, then ours."""
    args = ["template", release.release_name, *chart_args(release.chart)]
    args += ["--namespace", namespace]
    for values in release.values_files:
        args += ["--values", values]
    return [*args, "--values", values_file]


def render_problems(path: str, release: HelmRelease, stderr: str) -> list[Problem]:
    """Helm's refusal as problems: one per schema violation at the value's spec path, or the
    template error against the release's values."""
    problems = []
    for line in stderr.splitlines():
        keys = _schema_keys(line.strip())
        if keys is not None:
            problems.append(locate(path, release, *keys))
    if problems:
        return problems
    message = _error_block(stderr) or "helm template failed"
    return [Problem(f"{path}.values", f"the chart does not render with these values: {message}")]


def _error_block(stderr: str) -> str:
    """Helm's `Error: ...` paragraph on one line (v4 spreads a template error over several)."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Error: ")), None)
    if start is None:
        return " | ".join(last_lines(stderr, 3))
    block = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line.strip())
    return " ".join(block).removeprefix("Error: ")


def _schema_keys(line: str) -> tuple[list[str | int], str] | None:
    match = _SCHEMA_LINE.match(line)
    if match:
        pointer = match.group("pointer")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        return [_index(part) for part in parts], match.group("message")
    legacy = _LEGACY_SCHEMA_LINE.match(line)
    if legacy:
        dotted = legacy.group("dotted")
        parts = [] if dotted == "(root)" else dotted.split(".")
        return [_index(part) for part in parts], legacy.group("message")
    return None


def _index(part: str) -> str | int:
    return int(part) if part.isdigit() else part


def locate(path: str, release: HelmRelease, keys: list[str | int], message: str) -> Problem:
    """The problem at the spec path where the value at `keys` was set: the inline values, else
    the last values file that sets it, else the chart's own defaults."""
    where = _dotted(keys)
    if _has(release.values, keys):
        return Problem(f"{path}.values.{where}" if where else f"{path}.values", message)
    for index in reversed(range(len(release.values_files))):
        if _has(_read_yaml(release.values_files[index]), keys):
            return Problem(f"{path}.valuesFiles[{index}]", f"{where}: {message}")
    return Problem(f"{path}.chart", f"its default {where}: {message}")


def _dotted(keys: list[str | int]) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def _has(node: Any, keys: list[str | int]) -> bool:
    for key in keys:
        if isinstance(key, int) and isinstance(node, list) and 0 <= key < len(node):
            node = node[key]
        elif isinstance(node, dict) and str(key) in node:
            node = node[str(key)]
        else:
            return False
    return True


def _read_yaml(path: str) -> Any:
    try:
        return load_document(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
