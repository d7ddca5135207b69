"""Reading a rollout spec file on the worker: what a scheduled rollout runs each time.

Where it sits: a schedule's workflow names a spec file rather than carrying the spec, so each
run rolls out the file as it is then; reading a file is I/O, so it is an activity. A file that
does not validate fails with InvalidSpec and every problem, one per line.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from activities.failures import failure
from spec import RolloutSpec, SpecError, load_spec
from spec.reasons import FailureReason


@activity.defn
async def load_spec_file(path: str) -> RolloutSpec:
    """The validated spec in `path` (relative paths inside it resolved against its folder)."""
    try:
        return await asyncio.to_thread(load_spec, path)
    except SpecError as error:
        raise failure(
            FailureReason.INVALID_SPEC,
            error.render(),
            problems=[str(problem) for problem in error.problems],
        ) from None
