"""The activities this project's workers run.

Where it sits: worker.py registers everything `activities()` returns; the activity modules
(kube, helm, serving, preflight) add their functions here as they are written. A function rather
than a constant so that activities needing configuration (a kubeconfig, a clock) can be built
when the worker starts instead of at import time.
"""

from collections.abc import Callable
from typing import Any


def activities() -> list[Callable[..., Any]]:
    return []
