"""What several verbs share: loading a spec, following a run to its end, reporting a snapshot.

Where it sits: under the verbs in cli/commands/. Following is the same whether the run was just
started (`apply --wait`), is watched (`status --watch`), aborted or torn down: the live view or
progress lines while it runs, then the final view or the RolloutStatus document, and the exit
code of how it ended (cli.exit_codes).
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import WorkflowExecution

from cli.documents import status_document
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.follow import ROLLOUT_WORKFLOW, Snapshot, follow
from cli.live import display_for
from cli.output import Output
from cli.session import Session
from cli.views import snapshot_view
from helmcli.render import problems_of, render_charts
from spec import RolloutSpec, SpecError, load_spec
from spec.workflow_io import RolloutInput
from workflows import search


def load_spec_file(path: str) -> RolloutSpec:
    """The spec in `path`; a missing file or an invalid spec is refused (exit 5): one problem
    on one line, several one per line."""
    if not Path(path).is_file():
        raise CliError(
            f"{path}: no such file; give the path of a rollout spec with -f", ExitCode.REFUSED
        )
    try:
        return load_spec(Path(path))
    except SpecError as error:
        raise refusal(error) from None


async def check_charts(spec: RolloutSpec, path: str) -> None:
    """Render every local chart with its values (helm template); values a chart refuses are
    refused here (exit 5), before anything reads or changes the cluster."""
    problems = problems_of(await render_charts(spec))
    if problems:
        raise refusal(SpecError(path, problems))


def refusal(error: SpecError) -> CliError:
    """A refused spec (exit 5): one problem on one line, several one per line."""
    if len(error.problems) == 1:
        message = f"{error.source}: {error.problems[0]}; the spec is refused"
    else:
        message = error.render()
    return CliError(message, ExitCode.REFUSED)


async def latest_rollout(
    session: Session, target: str, outcomes: Sequence[str] = ()
) -> WorkflowExecution | None:
    """The target's newest RolloutWorkflow run (with one of `outcomes`, when given)."""
    query = f"WorkflowType = '{ROLLOUT_WORKFLOW}' AND {search.TARGET.name} = '{target}'"
    if outcomes:
        listed = ", ".join(f"'{outcome}'" for outcome in outcomes)
        query += f" AND {search.OUTCOME.name} IN ({listed})"
    async for execution in session.client.list_workflows(query, limit=1):
        return execution
    return None


async def rollout_input_of(session: Session, execution: WorkflowExecution) -> RolloutInput:
    """What a past rollout was started with (the first event of its history)."""
    handle = session.client.get_workflow_handle(execution.id, run_id=execution.run_id)
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [request] = await session.client.data_converter.decode(
        started.input.payloads, [RolloutInput]
    )
    if not isinstance(request, RolloutInput):
        raise CliError(f"the history of {execution.id} does not start with a rollout input")
    return request


def requester() -> str:
    """Who asks, as the workflow records it (`by` of approvals, aborts and pauses)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


async def watch(
    session: Session, output: Output, target: str, run_id: str | None = None
) -> ExitCode:
    """Follow the run until it ends or waits for approval; report it; its exit code."""
    final = await watch_snapshot(session, output, target, run_id)
    return final.exit_code or ExitCode.SUCCESS


async def watch_snapshot(
    session: Session,
    output: Output,
    target: str,
    run_id: str | None = None,
    *,
    document: bool = True,
) -> Snapshot:
    """`watch`, returning the last snapshot; `document=False` leaves stdout's one JSON document
    to the caller (the demo writes its own)."""
    display = display_for(output)
    with display:
        final = await follow(session, target, run_id, display.update)
    report(output, final, document=document)
    return final


def report(output: Output, snapshot: Snapshot, *, document: bool = True) -> None:
    """The RolloutStatus document, or the view and what to do next for a person."""
    if document:
        output.document("RolloutStatus", status_document(snapshot))
    output.show(snapshot_view(snapshot))
    hint = next_step(snapshot)
    # In text the view itself says what an approval gate waits for.
    if hint and (output.json or snapshot.exit_code != ExitCode.WAITING_FOR_APPROVAL):
        output.note(hint)


def next_step(snapshot: Snapshot) -> str:
    code = snapshot.exit_code
    target = snapshot.target
    if code == ExitCode.WAITING_FOR_APPROVAL:
        return (
            f"waiting for approval: 'llmd-rollout approve {target}' continues, "
            f"'llmd-rollout abort {target}' rolls back"
        )
    if snapshot.running:
        return f"follow it: llmd-rollout status {target} --watch"
    if code == ExitCode.ROLLED_BACK:
        return f"rolled back; the history of the target: llmd-rollout history {target}"
    return ""
