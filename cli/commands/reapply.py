"""`llmd-rollout set-image TARGET [--role R] IMAGE` and `llmd-rollout retry TARGET`: a new
rollout of a spec Temporal already holds, as Argo Rollouts users expect.

- set-image takes the spec of the target's last successful rollout (what serves now) and
  changes the vLLM image: of both roles (role overrides dropped), or of `--role` only;
- retry takes the spec of the target's last rollout when it failed, rolled back or was
  aborted, and runs it again.
Both start through rollouts.starting like `apply` (the per-target guard, exit 6 while one runs)
and, with --wait, follow the rollout like `status --watch`.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from cli.commands.common import latest_rollout, requester, rollout_input_of, watch
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.output import Output
from cli.session import Session, open_session
from cli.targets import parse_target
from manifests import spec_revision
from rollouts import start_rollout
from spec import RolloutSpec
from spec.workflow_io import Outcome
from workflows import search

RETRYABLE = (
    Outcome.ROLLED_BACK, Outcome.FAILED, Outcome.ROLLBACK_FAILED, Outcome.KEPT_FOR_INSPECTION,
)


async def run_set_image(args: argparse.Namespace, output: Output) -> int:
    target = parse_target(args.target)
    session = await open_session(args)
    found = await latest_rollout(session, target, (Outcome.SUCCEEDED,))
    if found is None:
        raise CliError(
            f"{target} has no successful rollout recorded in Temporal to take the spec from; "
            "roll it out with 'llmd-rollout apply -f SPEC' first"
        )
    spec = with_image((await rollout_input_of(session, found)).spec, args.image, args.role)
    where = f"{args.role} image" if args.role else "image"
    return await _start(session, output, args, spec, f"set-image: {where} {args.image}")


def with_image(spec: RolloutSpec, image: str, role: str | None) -> RolloutSpec:
    """`spec` with `image` for `role` (or for both roles, overrides dropped), validated as a
    spec file would be: a malformed image is refused naming the field."""
    document: dict[str, Any] = spec.model_dump(mode="json", by_alias=True)
    service = document["modelService"]
    if role is None:
        service["vllmImage"] = image
        for name in ("prefill", "decode"):
            service[name].pop("image", None)
        field = "modelService.vllmImage"
    else:
        service[role]["image"] = image
        field = f"modelService.{role}.image"
    try:
        return RolloutSpec.model_validate(document)
    except ValidationError as error:
        problem = error.errors()[0]
        raise CliError(
            f"{field}: {image!r} is not an image reference ({problem['msg']}); nothing was "
            "started", ExitCode.REFUSED,
        ) from None


async def run_retry(args: argparse.Namespace, output: Output) -> int:
    target = parse_target(args.target)
    session = await open_session(args)
    found = await latest_rollout(session, target)
    if found is None:
        raise CliError(f"no rollout of {target} is recorded in Temporal; nothing to retry")
    outcome = found.typed_search_attributes.get(search.OUTCOME) or ""
    if outcome not in RETRYABLE:
        raise CliError(
            f"the last rollout of {target} (run {found.run_id}) is {outcome or 'unknown'}, "
            f"not failed or aborted; nothing to retry (see 'llmd-rollout history {target}')"
        )
    spec = (await rollout_input_of(session, found)).spec
    return await _start(session, output, args, spec, f"retry of run {found.run_id} ({outcome})")


async def _start(
    session: Session, output: Output, args: argparse.Namespace, spec: RolloutSpec, reason: str
) -> int:
    target = spec.target_id
    handle = await start_rollout(
        session.client, spec, task_queue=session.task_queue,
        requested_by=f"cli:{requester()}", reason=reason,
    )
    run_id = handle.result_run_id or handle.first_execution_run_id or ""
    output.note(f"rollout of {target} started ({reason}): workflow {handle.id}, run {run_id}")
    if args.wait:
        return await watch(session, output, target, run_id)
    output.document(
        "RolloutStarted",
        {"target": target, "workflowId": handle.id, "runId": run_id,
         "revision": spec_revision(spec), "file": None, "reason": reason},
    )
    if not output.json:
        output.note(f"follow it: llmd-rollout status {target} --watch")
    return ExitCode.SUCCESS
