"""Fewer glibc malloc arenas for the worker, whose many threads otherwise each grow their own.

Where it sits: worker.py calls `limit_malloc_arenas()` first thing, before any thread starts.
glibc gives a thread that finds the main heap locked an arena of its own, up to eight per core.
The worker runs up to 128 blocking threads (Kubernetes calls), 16 activity threads, the
informers' watch threads and the SDK core's threads, so a busy worker ends up with 16 arenas on
two cores, each keeping freed memory of its own that the others cannot reuse. Two arenas is
what the glibc manual and the Python servers' advice (gunicorn, uvicorn) settle on for such
processes: the threads mostly wait on the network, so they seldom contend for the heap.

An operator's own MALLOC_ARENA_MAX wins (glibc reads it at start; we then leave it alone).
Elsewhere than glibc (musl, macOS) there is nothing to limit and nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3): the parameter number of M_ARENA_MAX in glibc's malloc.h.
M_ARENA_MAX = -8
WORKER_ARENAS = 2


def limit_malloc_arenas(arenas: int = WORKER_ARENAS) -> bool:
    """Cap this process's malloc arenas at `arenas`; True when glibc took the cap."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # 1 on success; musl has no mallopt, and a libc that ignores the parameter returns 0.
    return bool(mallopt(M_ARENA_MAX, arenas))
