"""Reading a spec file on the worker: a valid file gives the spec, a broken one InvalidSpec."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.specfile import load_spec_file
from tests.activities.specs import EXAMPLES


async def test_a_valid_file_gives_the_spec() -> None:
    spec = await ActivityEnvironment().run(load_spec_file, str(EXAMPLES / "demo.yaml"))
    assert spec.metadata.name == "wide-ep"


async def test_a_broken_file_fails_with_every_problem(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: llmd-rollout.llm-d.ai/v1alpha1\nkind: Rollout\n")
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(load_spec_file, str(broken))
    assert raised.value.type == "InvalidSpec" and raised.value.non_retryable
    assert "metadata: is required" in str(raised.value)
