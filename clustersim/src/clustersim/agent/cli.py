"""Command-line subcommands of the cluster agent, registered into `python -m clustersim`.

- `up`: the API server and the agent in one process (the agent still talks HTTP to the server);
  writes the kubeconfig and a small JSON info file (API URL, kubeconfig path, agent admin URL).
- `agent`: the agent alone, against any API server named by a kubeconfig.
- `fault <kind> ...`, `fault list`, `fault clear [ID]`, `fault load FILE`: run-time faults through
  the agent's admin endpoint (found with --admin URL, --info FILE or $CLUSTERSIM_INFO).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clustersim.agent.agent import CONTROLLERS, AgentConfig, AgentError, ClusterAgent
from clustersim.agent.faults import CRASH_ERRORS
from clustersim.agent.kubeconfig import KubeconfigError
from clustersim.agent.profile import BUILTIN_PROFILES, ProfileError
from clustersim.listeners import PortInUseError

Subcommands = argparse._SubParsersAction


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, so a reader polling for the file never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)


async def _until_signalled() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()


def _agent_config(
    args: argparse.Namespace, kubeconfig: Path, kubelet_ca: tuple[Path, Path] | None = None
) -> AgentConfig:
    controllers = tuple(c.strip() for c in args.controllers.split(",") if c.strip())
    return AgentConfig(
        kubeconfig=kubeconfig,
        profile=args.profile,
        time_scale=args.time_scale,
        faults_file=args.faults,
        admin_port=args.admin_port,
        controllers=controllers,
        kubelet_ca_cert=kubelet_ca[0] if kubelet_ca else args.kubelet_ca_cert,
        kubelet_ca_key=kubelet_ca[1] if kubelet_ca else args.kubelet_ca_key,
    )


async def _run_up(args: argparse.Namespace) -> int:
    from clustersim.apiserver import ApiServer, ApiServerConfig

    server = ApiServer(
        ApiServerConfig(
            port=args.port,
            kubeconfig_path=args.kubeconfig_out,
            state_file=args.state,
            data_dir=args.data_dir,
            # the cluster CA signs the kubelets' serving certificates, so the server verifies
            # them, as kube-apiserver does with --kubelet-certificate-authority
            kubelet_ca_from_own_pki=True,
        )
    )
    await server.start()
    if server.ca_path is None:
        raise AgentError("clustersim up serves HTTPS only")
    pki = server.ca_path.parent
    agent: ClusterAgent | None = None
    try:
        agent = ClusterAgent(
            _agent_config(args, Path(server.kubeconfig_path), (pki / "ca.crt", pki / "ca.key"))
        )
        await agent.start()
        info = {
            "api_url": server.url,
            "kubeconfig": str(server.kubeconfig_path),
            "admin_url": agent.admin_url,
            "kubelet_ca": str(agent.kubelet_ca.cert_path),
            "profile": agent.profile.name,
            "time_scale": agent.scale.factor,
            "pid": os.getpid(),
        }
        if args.info_out:
            _write_json(args.info_out, info)
        print(
            f"clustersim up: API {server.url}, kubeconfig {server.kubeconfig_path}, "
            f"agent admin {agent.admin_url}",
            flush=True,
        )
        await _until_signalled()
    finally:
        if agent is not None:
            await agent.stop()
        await server.stop()
    return 0


async def _run_agent(args: argparse.Namespace) -> int:
    agent = ClusterAgent(_agent_config(args, args.kubeconfig))
    try:
        await agent.start()
        if args.info_out:
            _write_json(
                args.info_out,
                {"admin_url": agent.admin_url, "pid": os.getpid(), **agent.describe()},
            )
        print(f"clustersim agent up: admin {agent.admin_url}", flush=True)
        await _until_signalled()
    finally:
        await agent.stop()
    return 0


def _guarded(run: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        _logging(args.verbose)
        try:
            result: int = asyncio.run(run(args))
            return result
        except (AgentError, ProfileError, KubeconfigError, PortInUseError) as error:
            print(f"clustersim: {error}", file=sys.stderr)
            return 2

    return handler


def _agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default="h200-2node",
        help=f"cluster profile: {', '.join(BUILTIN_PROFILES)} or a YAML file",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every simulated duration (0.01: a 10-minute load takes 6 s)",
    )
    parser.add_argument(
        "--faults", type=Path, default=None, help="fault profile YAML to load at start"
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=0,
        help="port of the agent admin endpoint on 127.0.0.1 (0: any free port)",
    )
    parser.add_argument(
        "--kubelet-ca-cert",
        type=Path,
        default=None,
        help="CA certificate (PEM) that signs the kubelets' serving certificates "
        "(default: one the agent makes; `up` uses the API server's CA)",
    )
    parser.add_argument(
        "--kubelet-ca-key", type=Path, default=None, help="that CA's private key (PEM)"
    )
    parser.add_argument(
        "--info-out",
        type=Path,
        default=None,
        help="write a JSON file with the URLs once everything is up",
    )
    parser.add_argument(
        "--controllers",
        default=",".join(CONTROLLERS),
        help="comma-separated parts to run (default: all)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")


# ---- fault subcommands --------------------------------------------------------------------


def _admin_url(args: argparse.Namespace) -> str:
    if args.admin:
        return str(args.admin).rstrip("/")
    info = args.info or os.environ.get("CLUSTERSIM_INFO")
    if not info:
        raise SystemExit("clustersim: give --admin URL or --info FILE (or set CLUSTERSIM_INFO)")
    return str(json.loads(Path(info).read_text())["admin_url"]).rstrip("/")


def _call(args: argparse.Namespace, method: str, path: str, body: str | None = None) -> int:
    request = urllib.request.Request(
        _admin_url(args) + path,
        method=method,
        data=body.encode() if body is not None else None,
        headers={"Content-Type": "application/yaml"} if body is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(json.dumps(json.loads(response.read() or b"{}"), indent=2))
            return 0
    except urllib.error.HTTPError as error:
        print(f"clustersim: {error.code}: {error.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"clustersim: cannot reach the agent admin endpoint: {error.reason}", file=sys.stderr)
        return 1


def _add_fault(kind: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        match = {
            k: getattr(args, k)
            for k in ("image", "role", "pod", "namespace", "container", "node")
            if getattr(args, k, None)
        }
        spec: dict[str, Any] = {"kind": kind, "match": match}
        for option, key in (
            ("count", "count"),
            ("duration", "duration_seconds"),
            ("after", "after_seconds"),
            ("error", "error"),
            ("exit_code", "exit_code"),
            ("factor", "factor"),
            ("message", "message"),
            ("ttft_factor", "ttft_factor"),
            ("error_rate", "error_rate"),
            ("no_pd", "no_pd"),
        ):
            value = getattr(args, option, None)
            if value is not None:
                spec[key] = value
        resources = getattr(args, "resource", None)
        if resources:
            spec["resources"] = dict(item.split("=", 1) for item in resources)
        return _call(args, "POST", "/faults", json.dumps(spec))

    return handler


def _fault_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin", help="agent admin URL (from `up`'s info file)")
    parser.add_argument("--info", help="info JSON written by `up --info-out`")


_KINDS: dict[str, tuple[str, str]] = {
    "image-pull": ("image_pull", "image pulls fail: ErrImagePull, then ImagePullBackOff"),
    "crash": ("crash", "containers exit with an error after --after seconds"),
    "oom": ("oom", "containers are OOMKilled (exit 137) after --after seconds"),
    "slow-load": ("slow_load", "model loads take --factor times longer"),
    "load-hang": ("load_hang", "model loads never finish"),
    "node-not-ready": ("node_not_ready", "nodes stop answering (NotReady, pods evicted)"),
    "capacity": ("capacity", "a node's allocatable is reduced (--resource nvidia.com/gpu=4)"),
    "gateway-503": ("gateway_503", "the gateway answers 503 no healthy upstream"),
    "degrade": ("degrade", "vLLM of an image regresses: slower TTFT, errors, or no P/D"),
}


def _register_faults(faults: Subcommands[argparse.ArgumentParser]) -> None:
    for command, (kind, text) in _KINDS.items():
        parser = faults.add_parser(command, help=f"cluster fault: {text}")
        _fault_target(parser)
        if kind in ("node_not_ready", "capacity"):
            parser.add_argument("--node", help="node name regex (default: every node)")
        elif kind != "gateway_503":
            parser.add_argument("--image", help="image glob, e.g. 'ghcr.io/llm-d/*'")
            parser.add_argument("--role", help="llm-d.ai/role label value (prefill, decode)")
            parser.add_argument("--pod", help="pod name regex")
            parser.add_argument("--namespace", help="namespace")
            parser.add_argument("--container", help="container name")
        parser.add_argument("--count", type=int, help="fire at most this many times (default 1)")
        parser.add_argument("--duration", type=float, help="active for this many simulated seconds")
        if kind in ("crash", "oom"):
            parser.add_argument("--after", type=float, help="simulated seconds after start")
        if kind == "crash":
            parser.add_argument("--error", choices=CRASH_ERRORS, help="error pattern to log")
            parser.add_argument("--exit-code", type=int, help="exit code (default 1)")
        if kind == "slow_load":
            parser.add_argument("--factor", type=float, help="load time multiplier (default 3)")
        if kind == "degrade":
            parser.add_argument("--ttft-factor", type=float, help="multiply time to first token")
            parser.add_argument("--error-rate", type=float, help="share of requests failing (0..1)")
            parser.add_argument(
                "--no-pd", action="store_true", default=None,
                help="decode ignores the prefill's KV cache and recomputes the prompt",
            )
        if kind == "image_pull":
            parser.add_argument("--message", help="registry error text")
        if kind == "capacity":
            parser.add_argument(
                "--resource",
                action="append",
                metavar="NAME=QUANTITY",
                help="allocatable override, repeatable",
            )
        parser.set_defaults(handler=_add_fault(kind))
    listing = faults.add_parser("list", help="cluster faults: show them")
    _fault_target(listing)
    listing.set_defaults(handler=lambda args: _call(args, "GET", "/faults"))
    clear = faults.add_parser("clear", help="cluster faults: remove one (ID) or all")
    _fault_target(clear)
    clear.add_argument("id", nargs="?", help="fault id (default: all)")
    clear.set_defaults(
        handler=lambda args: _call(args, "DELETE", f"/faults/{args.id}" if args.id else "/faults")
    )
    load = faults.add_parser("load", help="cluster faults: add the faults of a YAML profile")
    _fault_target(load)
    load.add_argument("file", type=Path)
    load.set_defaults(handler=lambda args: _call(args, "POST", "/faults", args.file.read_text()))


def register(
    subcommands: Subcommands[argparse.ArgumentParser],
    fault_subcommands: Subcommands[argparse.ArgumentParser],
) -> None:
    up = subcommands.add_parser("up", help="run the API server and the cluster agent together")
    up.add_argument(
        "--kubeconfig-out", type=Path, required=True, help="where to write the kubeconfig"
    )
    up.add_argument("--port", type=int, default=0, help="API server port (0: any free port)")
    up.add_argument("--state", type=Path, default=None, help="API server JSON state file")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="API server directory for token and certificates",
    )
    _agent_options(up)
    up.set_defaults(handler=_guarded(_run_up))
    agent = subcommands.add_parser("agent", help="run the cluster agent against an API server")
    agent.add_argument(
        "--kubeconfig", type=Path, required=True, help="kubeconfig of the API server"
    )
    _agent_options(agent)
    agent.set_defaults(handler=_guarded(_run_agent))
    _register_faults(fault_subcommands)
