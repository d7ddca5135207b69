"""The worker's malloc arena cap (embedded/malloc_arenas.py): eight threads share two arenas.

Each case runs a fresh interpreter, since the cap only holds for threads started after it:
eight threads allocate, then glibc's own malloc_info(3) report is read and its heaps counted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import ctypes, os, sys, tempfile, threading
from embedded.malloc_arenas import limit_malloc_arenas
took = limit_malloc_arenas() if sys.argv[1] == "limit" else None
ready, done = threading.Barrier(9), threading.Event()
def allocate():
    kept = [bytearray(4096) for _ in range(100)]  # above pymalloc's 512 bytes: malloc's arenas
    ready.wait()
    done.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
ready.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, "malloc_info.xml")
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    heaps = open(path).read().count("<heap nr=")
done.set()
for thread in threads:
    thread.join()
print(took, heaps)
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="malloc arenas are glibc's"
)


def probe(mode: str, **environment: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True,
        timeout=60, check=True, env={"PATH": "/usr/bin:/bin", **environment},
    )
    took, heaps = done.stdout.split()
    return took, int(heaps)


def test_without_the_cap_eight_threads_get_arenas_of_their_own() -> None:
    # The premise: were it not for the cap, the worker's threads would each grow an arena.
    assert probe("none")[1] > 2


def test_with_the_cap_eight_threads_share_two_arenas() -> None:
    assert probe("limit") == ("True", 2)


def test_an_operators_malloc_arena_max_is_left_alone() -> None:
    took, heaps = probe("limit", MALLOC_ARENA_MAX="4")
    assert took == "False"
    assert heaps == 4
