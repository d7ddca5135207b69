"""Fixtures of the CLI tests: one demo environment per module (Temporal dev server, simulated
cluster, worker process), and the CLI run as a user runs it: a process, off a TTY unless a test
gives it a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from embedded.demo import DemoEnvironment

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
STARTER = REPO / "starter.py"
# A ten-minute model load takes about three seconds; image pulls about one.
TIME_SCALE = 0.005
CLI_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class CliRun:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"llmd-rollout {' '.join(self.args)} -> {self.code}\n{self.out}\n{self.err}"


Cli = Callable[..., "asyncio.Future[CliRun]"]


def cli_environment(demo: DemoEnvironment) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": demo.temporal_address,
        "TEMPORAL_NAMESPACE": demo.namespace,
        "KUBECONFIG": str(demo.kubeconfig),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "NO_COLOR": "1",
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoEnvironment]:
    environment = DemoEnvironment(tmp_path_factory.mktemp("cli-demo"), time_scale=TIME_SCALE)
    await environment.start()
    try:
        yield environment
    finally:
        await environment.stop()


@pytest.fixture(scope="module")
def cli(demo: DemoEnvironment) -> Callable[..., Any]:
    environment = cli_environment(demo)

    async def run(*args: str, timeout: float = CLI_TIMEOUT_SECONDS) -> CliRun:
        completed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(STARTER), *args],
            capture_output=True, text=True, env=environment, timeout=timeout,
        )
        return CliRun(args, completed.returncode, completed.stdout, completed.stderr)

    return run


def spec_variant(directory: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """examples/demo.yaml changed by `change`, written as `name` (chart paths made absolute)."""
    document = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    _absolute_charts(document)
    change(document)
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _absolute_charts(node: Any) -> None:
    if isinstance(node, dict):
        chart = node.get("chart")
        if isinstance(chart, dict) and isinstance(chart.get("path"), str):
            chart["path"] = str((EXAMPLES / chart["path"]).resolve())
        for value in node.values():
            _absolute_charts(value)
    elif isinstance(node, list):
        for item in node:
            _absolute_charts(item)
