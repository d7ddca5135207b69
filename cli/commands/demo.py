"""`llmd-rollout demo`: the whole story on one machine, with nothing running beforehand.

It starts a Temporal dev server (with its UI), the simulated two-node H200 cluster and a worker
(embedded.demo), then, as a user would with the CLI:
1. rolls out examples/demo.yaml with the live view;
2. shows the verification as the llm-d guide does it: GET /v1/models and a completion through
   the gateway;
3. upgrades vLLM to a new image decode first: decode is rolled and verified beside the old
   prefill, an approval gate holds the rollout (the demo approves it, as
   `llmd-rollout approve` would), then prefill follows;
4. prints the Temporal UI address and the commands to explore, and keeps everything up until
   Ctrl-C (or stops at once with --exit), stopping every process it started. SIGTERM and
   SIGHUP (`kill`, a closed terminal) stop it the same way: its children run in sessions of
   their own, so a demo that just died would leave them running.

Every command it prints runs as printed in a new terminal once the printed `export` lines are
pasted (the first puts this installation's bin directory, with llmd-rollout, helm and kubectl,
on PATH); tests/cli/test_demo.py runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from rich.json import JSON
from rich.rule import Rule

from cli.commands.common import load_spec_file, requester, watch_snapshot
from cli.documents import status_document
from cli.errors import CliError
from cli.exit_codes import ExitCode
from cli.follow import Snapshot
from cli.output import Output
from cli.session import Session
from embedded import (
    ChildProcessError,
    ClusterSimError,
    DemoEnvironment,
    DemoEnvironmentError,
    DevServerError,
    connect,
)
from k8s import Gateway, KubeClient
from rollouts import start_rollout
from spec import RolloutSpec
from spec.rollout import Gate, Target
from spec.workflow_io import ApproveRequest, ControlResult
from workflows.ids import rollout_workflow_id

DEFAULT_TIME_SCALE = 0.01
INTERRUPTED = 130
WORKER_CHECK_SECONDS = 1.0
DEMO_SPEC = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
UPGRADE_IMAGE = "ghcr.io/llm-d/llm-d:v0.2.0"
# The Python client speaks to the gateway through the API server's service proxy: no port
# forward, and no privileged port 80 on the machine.
GATEWAY_VIA = "the API server's service proxy"


async def run(args: argparse.Namespace, output: Output) -> int:
    if args.output == "auto":
        # The demo is for people: text even in a pipe (`make demo | tee`); -o json asks for
        # the one DemoResult document at the end.
        output = Output("text", no_color=args.no_color)
    spec = load_spec_file(args.spec or str(DEMO_SPEC))
    _stop_on_termination()
    workdir = Path(tempfile.mkdtemp(prefix="llmd-demo-"))
    environment = DemoEnvironment(workdir, time_scale=args.time_scale)
    keep_workdir = True
    try:
        output.note(
            f"starting a Temporal dev server, the simulated cluster (h200-2node, time scale "
            f"{args.time_scale}) and a worker in {workdir}"
        )
        try:
            await environment.start()
        except (DevServerError, ClusterSimError, DemoEnvironmentError, ChildProcessError) as error:
            raise CliError(f"the demo could not start: {error}") from None
        code = await _while_the_worker_lives(environment, _story(args, output, environment, spec))
        keep_workdir = code != ExitCode.SUCCESS
        if code == ExitCode.SUCCESS and not args.exit:
            output.note("press Ctrl-C to stop everything")
            # Ctrl-C cancels this task: here that is the expected way out, not an interruption.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            output.note("stopping the worker, the simulated cluster and Temporal")
        return code
    except asyncio.CancelledError:
        # Ctrl-C (asyncio.run cancels this task): fall through to stopping everything.
        output.warn("interrupted: stopping the demo's processes")
        return INTERRUPTED
    finally:
        try:
            await environment.stop()
        except DemoEnvironmentError as error:
            output.warn(f"could not stop everything: {error}")
        if keep_workdir:
            output.warn(f"logs kept in {workdir} (worker.log, clustersim/, temporal/)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _stop_on_termination() -> None:
    """SIGTERM and SIGHUP cancel the demo's task as Ctrl-C does (asyncio.run's own handling),
    so the demo stops what it started before it exits."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    if task is not None:
        for signal_number in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signal_number, task.cancel)


async def _while_the_worker_lives(
    environment: DemoEnvironment, story: Coroutine[Any, Any, int]
) -> int:
    """Run the story, unless the worker dies: then nothing would ever finish the rollout."""
    telling = asyncio.create_task(story)
    try:
        while not telling.done():
            problem = environment.worker_problem()
            if problem is not None:
                raise CliError(f"the demo's worker died: {problem}")
            await asyncio.wait({telling}, timeout=WORKER_CHECK_SECONDS)
        return telling.result()
    finally:
        if not telling.done():
            telling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await telling


async def _story(
    args: argparse.Namespace, output: Output, environment: DemoEnvironment, spec: RolloutSpec
) -> int:
    session = Session(await connect(environment.connection), environment.connection)
    target = spec.target_id
    runs: dict[str, Snapshot] = {}
    output.note(f"Temporal UI: {environment.ui_url}")
    spec_path = Path(args.spec or DEMO_SPEC).resolve()
    _section(output, f"1. install: llmd-rollout apply -f {spec_path}")
    runs["install"] = await _rollout(session, output, spec, "demo install")
    code = _code(runs["install"])
    if code != ExitCode.SUCCESS:
        return _failed(output, environment, runs, code)
    _section(output, "2. verify through the gateway")
    _show_verification(output, spec, environment.kubeconfig)

    upgrade = upgraded(spec)
    _section(
        output,
        f"3. upgrade vLLM to {UPGRADE_IMAGE}, decode first, with an approval gate before "
        "prefill",
    )
    runs["upgrade"] = await _rollout(session, output, upgrade, "demo upgrade: decode-first canary")
    code = _code(runs["upgrade"])
    if code == ExitCode.WAITING_FOR_APPROVAL:
        output.note(f"$ llmd-rollout approve {target}")
        handle = session.client.get_workflow_handle(rollout_workflow_id(target))
        answer: ControlResult = await handle.execute_update(
            "approve",
            ApproveRequest(by=f"demo:{requester()}", note="decode verified beside old prefill"),
            result_type=ControlResult,
        )
        output.note(answer.message)
        runs["upgrade"] = await watch_snapshot(session, output, target, document=False)
        code = _code(runs["upgrade"])
    if code != ExitCode.SUCCESS:
        return _failed(output, environment, runs, code)
    _section(output, "4. verify the upgraded stack")
    _show_verification(output, upgrade, environment.kubeconfig)
    if args.exit:
        # Everything stops as this returns: commands to try would find nothing running.
        _section(output, "the demo is done (--exit: everything stops now)")
        output.note(f"Temporal UI was {environment.ui_url}; run without --exit to explore")
    else:
        _section(output, "the demo is up")
        _explore(output, environment, target)
    _document(output, environment, runs, ExitCode.SUCCESS)
    return ExitCode.SUCCESS


async def _rollout(
    session: Session, output: Output, spec: RolloutSpec, reason: str
) -> Snapshot:
    handle = await start_rollout(
        session.client, spec, task_queue=session.task_queue, requested_by="demo", reason=reason
    )
    run_id = handle.result_run_id or handle.first_execution_run_id
    return await watch_snapshot(session, output, spec.target_id, run_id, document=False)


def _code(snapshot: Snapshot) -> ExitCode:
    return snapshot.exit_code or ExitCode.SUCCESS


def upgraded(spec: RolloutSpec) -> RolloutSpec:
    """The demo's upgrade: a new vLLM image for both roles, rolled decode first; the gate
    between the roles waits for approval, so prefill changes only once decode served."""
    service = spec.model_service.model_copy(update={"vllm_image": UPGRADE_IMAGE})
    strategy = spec.strategy.model_copy(
        update={"role_order": ["decode", "prefill"], "between_roles": Gate(approval=True)}
    )
    return spec.model_copy(update={"model_service": service, "strategy": strategy})


def _show_verification(output: Output, spec: RolloutSpec, kubeconfig: Path) -> None:
    """GET /v1/models and POST /v1/completions through the gateway, printed like the guide,
    with the activities' own gateway client (the same path the rollout's verification took)."""
    target = Target.model_validate(
        {**spec.target.model_dump(), "kubeconfig": str(kubeconfig)}
    )
    client = KubeClient.for_target(target)
    try:
        gateway = Gateway(spec.model_copy(update={"target": target}), client)
        proxy = (
            f"/api/v1/namespaces/{spec.target.namespace}/services/{spec.gateway_service}:"
            f"{spec.verification.gateway.port}/proxy"
        )
        output.note(f"the gateway, reached through {GATEWAY_VIA} (KUBECONFIG={kubeconfig}):")
        body = {
            "model": spec.model_service.model_name,
            "prompt": spec.verification.prompt,
            "max_tokens": spec.verification.max_tokens,
        }
        for method, path, payload in (
            ("GET", "/v1/models", None),
            ("POST", "/v1/completions", body),
        ):
            output.note("$ " + gateway_command(proxy + path, payload))
            status, data = gateway.call(method, path, payload)
            _show_json(output, status, data)
    finally:
        client.close()


def gateway_command(proxy_path: str, payload: Any) -> str:
    """The kubectl command that makes the same request through the API server's proxy (runs
    as printed, with the KUBECONFIG the demo prints)."""
    if payload is None:
        return f"kubectl get --raw {proxy_path}"
    return f"echo {shlex.quote(json.dumps(payload))} | kubectl create --raw {proxy_path} -f -"


def _show_json(output: Output, status: int, data: bytes) -> None:
    try:
        document: Any = json.loads(data)
    except ValueError:
        output.note(f"HTTP {status}: {data[:500].decode(errors='replace')}")
        return
    text = json.dumps(document, indent=2)
    if output.json:
        output.note(text)
    else:
        output.show(JSON(text))
    if status != 200:
        output.warn(f"the gateway answered HTTP {status}")


def _explore(output: Output, environment: DemoEnvironment, target: str) -> None:
    lines = [
        f"Temporal UI:      {environment.ui_url}",
        f"Temporal address: {environment.temporal_address} (namespace {environment.namespace})",
        f"kubeconfig:       {environment.kubeconfig}",
        "",
        "try, in another terminal:",
        *(f"  {line}" for line in exports(environment)),
        "  llmd-rollout list",
        f"  llmd-rollout history {target}",
        f"  llmd-rollout status {target}",
        "  kubectl get pods -A",
    ]
    for line in lines:
        output.note(line)


def exports(environment: DemoEnvironment) -> list[str]:
    """What a new terminal needs: this installation's bin directory (llmd-rollout, helm and
    kubectl) on PATH, and where Temporal and the cluster are."""
    return [
        f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:\"$PATH\"",
        f"export TEMPORAL_ADDRESS={environment.temporal_address}",
        f"export TEMPORAL_NAMESPACE={environment.namespace}",
        f"export KUBECONFIG={shlex.quote(str(environment.kubeconfig))}",
    ]


def _section(output: Output, title: str) -> None:
    if output.json:
        output.note(f"== {title}")
    else:
        output.show(Rule(title, align="left", style="bold blue"))


def _failed(
    output: Output, environment: DemoEnvironment, runs: dict[str, Snapshot], code: ExitCode
) -> int:
    problem = environment.worker_problem()
    if problem:
        output.warn(problem)
    output.warn(f"the demo stopped: the rollout ended with exit code {int(code)}")
    _document(output, environment, runs, code)
    return code


def _document(
    output: Output, environment: DemoEnvironment, runs: dict[str, Snapshot], code: ExitCode
) -> None:
    output.document(
        "DemoResult",
        {
            "exitCode": int(code),
            "temporalAddress": environment.temporal_address,
            "temporalUi": environment.ui_url,
            "namespace": environment.namespace,
            "runs": {name: status_document(snapshot) for name, snapshot in runs.items()},
        },
    )
