"""The way out of our short-lived entry points.

Where it sits: worker.py and starter.py end with `exit_now(code)` instead of returning to the
interpreter. The Temporal SDK's Rust core keeps threads of its own; on Python 3.11 the normal
interpreter shutdown can abort while tearing them down (temporalio/sdk-python#300), turning a
finished command into a crash with a core dump and a wrong exit code. So we flush what we wrote
and leave with `os._exit`, skipping the teardown that has nothing left to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Flush logs, stdout and stderr, then end the process with `code` at once."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe or stream must not turn a clean exit into a traceback.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
