"""Which helm or kubectl to run: the one configured, else the one on PATH, else the pinned one
`make venv` installs beside the interpreter.

Where it sits: helmcli/runner.py (helm) and k8s/crds.py (kubectl for kustomize CRD
bundles) ask here before running a command; `plan` calls the same code from the CLI. Looking
beside sys.executable is what lets `.venv/bin/llmd-rollout plan` find `.venv/bin/helm` without
an activated venv.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def tool_binary(name: str, environment_variable: str) -> str:
    """$environment_variable, else `name` on PATH, else the pinned `name` beside Python."""
    configured = os.environ.get(environment_variable)
    if configured:
        return configured
    pinned = Path(sys.executable).parent / name
    if shutil.which(name) is None and pinned.is_file():
        return str(pinned)
    return name
