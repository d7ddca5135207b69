"""Where tests find ../shared/reference: present in development and CI, absent in a user's clone.

Absent, the tests that compare against it skip with a message naming what is missing; under
CI=true its absence is a failure, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def reference_dir() -> Path:
    configured = os.environ.get("LLMD_REFERENCE_DIR")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "reference"
    if (candidate / "NOTES.md").is_file():
        return candidate
    message = (
        f"reference data not found at {candidate} (set LLMD_REFERENCE_DIR or place the shared "
        "reference folder beside the repository)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
