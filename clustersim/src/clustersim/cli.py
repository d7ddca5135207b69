"""The `python -m clustersim` command line: argparse subcommands.

`serve` runs the API server; `fault api ...` talks to its admin endpoint. The cluster agent
adds its own subcommands (`up`, more `fault` kinds) from `clustersim.agent.cli`, imported lazily
when present: it must define `register(subcommands, fault_subcommands) -> None`, where each
subparser sets `handler=<callable taking the parsed args, returning an exit code>`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from clustersim import faultcli
from clustersim.apiserver import ApiServer, ApiServerConfig
from clustersim.listeners import PortInUseError

Handler = Callable[[argparse.Namespace], int]


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ApiServerConfig(
        host=args.host, port=args.port, data_dir=args.data_dir, token_file=args.token_file,
        kubeconfig_path=args.kubeconfig_out, state_file=args.state,
        insecure_http=args.insecure_http, watch_history=args.watch_history,
        bookmark_interval_seconds=args.bookmark_interval, access_log=args.verbose,
        kubelet_certificate_authority=args.kubelet_certificate_authority,
    )
    try:
        return asyncio.run(_run_until_signalled(ApiServer(config)))
    except PortInUseError as error:
        print(f"clustersim: {error}", file=sys.stderr)
        return 2


async def _run_until_signalled(server: ApiServer) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    print(f"clustersim API server on {server.url}; kubeconfig {server.kubeconfig_path}",
          flush=True)
    await stopping.wait()
    await server.stop()
    return 0


def _add_serve(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subcommands.add_parser("serve", help="run the Kubernetes API server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=6443,
                       help="port to listen on (0 picks a free one; the kubeconfig tells it)")
    serve.add_argument("--kubeconfig-out", type=Path, default=None,
                       help="where to write the kubeconfig (default: DATA_DIR/kubeconfig)")
    serve.add_argument("--state", type=Path, default=None,
                       help="JSON state file, loaded at start and written at shutdown")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="directory for the token, certificates and kubeconfig "
                            "(default: a temporary directory)")
    serve.add_argument("--token-file", type=Path, default=None,
                       help="bearer tokens, one per line (generated when absent)")
    serve.add_argument("--kubelet-certificate-authority", type=Path, default=None,
                       help="CA (PEM) that signs kubelet serving certificates; without it they "
                            "are not verified, as kube-apiserver does by default")
    serve.add_argument("--insecure-http", action="store_true",
                       help="serve plain HTTP instead of HTTPS")
    serve.add_argument("--watch-history", type=int, default=5000,
                       help="watch events kept per resource for resuming watches")
    serve.add_argument("--bookmark-interval", type=float, default=5.0,
                       help="seconds between watch bookmarks (when clients allow them)")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logs, access log")
    serve.set_defaults(handler=_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clustersim",
                                     description="clustersim: a simulated Kubernetes cluster")
    subcommands = parser.add_subparsers(dest="command", required=True)
    _add_serve(subcommands)
    fault = subcommands.add_parser("fault", help="inject faults into the simulated cluster")
    fault_subcommands = fault.add_subparsers(dest="fault_target", required=True)
    faultcli.register(fault_subcommands)
    if (Path(__file__).parent / "agent" / "cli.py").exists():
        try:
            agent_cli = importlib.import_module("clustersim.agent.cli")
        except ImportError as error:
            # a broken agent must not take `serve` down with it
            print(f"clustersim: agent commands unavailable: {error}", file=sys.stderr)
        else:
            agent_cli.register(subcommands, fault_subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
