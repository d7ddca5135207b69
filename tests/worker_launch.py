"""worker.py in a process of its own, with test-only workflows and activities registered.

The worker-process tests (test_worker_entrypoint, test_worker_service, test_tls_profiles) run the
real entry point, `worker.main()`, with a clean environment; a launcher adds what the test needs
to the registries first.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_SECONDS = 30


def _launcher(module: str, workflows: Sequence[str], activities: Sequence[str]) -> str:
    names = [*workflows, *activities]
    return (
        f"from {module} import {', '.join(names)}\n"
        "from workflows.registry import WORKFLOWS\n"
        f"WORKFLOWS.extend([{', '.join(workflows)}])\n"
        "import worker\n"
        "registered = worker.activities\n"
        f"worker.activities = lambda: [*registered(), {', '.join(activities)}]\n"
        "worker.main()\n"
    )


@contextmanager
def worker_process(
    module: str,
    environment: Mapping[str, str],
    workflows: Sequence[str],
    activities: Sequence[str] = (),
) -> Iterator[subprocess.Popen[str]]:
    """Run worker.py with `module`'s named workflows and activities added; killed if still up."""
    process = subprocess.Popen(
        [sys.executable, "-c", _launcher(module, workflows, activities)],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **environment},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=STOP_TIMEOUT_SECONDS)
