"""`python -m clustersim fault api ...`: manage API fault rules through the admin endpoint."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from clustersim.apiserver import kubeconfig

ADMIN = "/clustersim/admin"


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    server, token, ca_pem = kubeconfig.read_connection(Path(args.kubeconfig))
    context = None
    if server.startswith("https") and ca_pem is not None:
        with tempfile.NamedTemporaryFile(suffix=".crt") as ca_file:
            ca_file.write(ca_pem)
            ca_file.flush()
            context = ssl.create_default_context(cafile=ca_file.name)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server + ADMIN + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        detail = json.loads(error.read() or b"{}")
        message = detail.get("message", error)
        raise SystemExit(f"clustersim refused the request: {message}") from error


def _add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"verbs": args.verb or [], "path": args.path, "rate": args.rate}
    if args.count is not None:
        body["count"] = args.count
    if args.duration is not None:
        body["durationSeconds"] = args.duration
    if args.error is not None:
        body.update(kind="error", code=args.error)
        if args.retry_after is not None:
            body["retryAfterSeconds"] = args.retry_after
        if args.message:
            body["message"] = args.message
    elif args.latency_ms is not None:
        body.update(kind="latency", latencyMs=args.latency_ms)
    elif args.cut_watch_after is not None:
        body.update(kind="watch-cut", afterEvents=args.cut_watch_after)
    else:
        body["kind"] = "reset"
    print(json.dumps(_request(args, "POST", "/faults", body), indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    print(json.dumps(_request(args, "GET", "/faults"), indent=2))
    return 0


def _clear(args: argparse.Namespace) -> int:
    if args.id:
        _request(args, "DELETE", f"/faults/{args.id}")
    else:
        _request(args, "DELETE", "/faults")
    return 0


def _compact(args: argparse.Namespace) -> int:
    print(json.dumps(_request(args, "POST", "/compact", {})))
    return 0


def register(fault_subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = fault_subcommands.add_parser("api", help="faults of the API server itself")
    api.add_argument("--kubeconfig", required=True, help="kubeconfig of the clustersim server")
    actions = api.add_subparsers(dest="fault_action", required=True)

    add = actions.add_parser("add", help="add a bounded fault rule")
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--error", type=int, metavar="CODE",
                      help="answer with this HTTP status (e.g. 500, 503, 429)")
    what.add_argument("--latency-ms", type=int, help="delay matching requests")
    what.add_argument("--cut-watch-after", type=int, metavar="N",
                      help="drop matching watch streams after N events")
    what.add_argument("--reset", action="store_true", help="reset matching connections")
    add.add_argument("--verb", action="append",
                     help="Kubernetes verb to match (get, list, watch, create, update, patch, "
                          "delete, deletecollection); repeatable; default all")
    add.add_argument("--path", default="", help="regular expression searched in the URL path")
    add.add_argument("--rate", type=float, default=1.0, help="probability of firing (0..1]")
    add.add_argument("--retry-after", type=int, help="Retry-After seconds (429/503)")
    add.add_argument("--message", default="", help="error message to answer")
    add.add_argument("--count", type=int, help="stop after firing this many times")
    add.add_argument("--duration", type=float, help="stop after this many seconds")
    add.set_defaults(handler=_add)

    listing = actions.add_parser("list", help="show active fault rules")
    listing.set_defaults(handler=_list)

    clear = actions.add_parser("clear", help="remove one rule (--id) or all")
    clear.add_argument("--id", default=None)
    clear.set_defaults(handler=_clear)

    compact = actions.add_parser("compact",
                                 help="drop the watch history, as an etcd compaction does "
                                      "(resuming older watches answers 410 Gone)")
    compact.set_defaults(handler=_compact)


if __name__ == "__main__":
    sys.exit("use: python -m clustersim fault api ...")
