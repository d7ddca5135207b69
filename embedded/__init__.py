"""Runtime plumbing shared by the entry points: nothing here knows about rollouts.

Where it sits: under the entry points (worker.py, starter.py) and the CLI; it imports nothing of
ours. See docs/architecture.md ("Layers").

- `temporal`: the embedded Temporal dev server (the demo's and the tests' default).
- `search_attributes`: the custom search attribute names and types every Temporal we use carries.
- `connect`: connection settings from flags and environment, and the client factory.
- `logging`: structlog configuration (JSON lines off a TTY, console on one).
- `activity_logging`: binds workflow ID, run ID, activity and target to an activity's log lines.
- `telemetry`: the SDK runtime with its Prometheus exporter (the worker's /metrics).
- `health`: the worker's /healthz and /readyz.
- `process_exit`: the hard exit our short-lived entry points leave through.
- `malloc_arenas`: the worker's cap on glibc malloc arenas (its many threads would each grow one).
- `child_process`: a child process we start, wait for and stop, with its log's tail on failure.
- `clustersim_process`: the simulated cluster run as a child process (`python -m clustersim`);
  the only place the product reaches clustersim, and only through its command line.
- `demo`: the demo environment: Temporal, clustersim and a worker, up and torn down together.
"""

from embedded.activity_logging import ActivityLogContext
from embedded.child_process import ChildProcess, ChildProcessError, log_tail
from embedded.clustersim_process import ClusterSimError, ClusterSimInfo, ClusterSimProcess
from embedded.connect import (
    DEFAULT_TASK_QUEUE,
    ConnectionSettings,
    ConnectionSettingsError,
    add_connection_arguments,
    connect,
    settings_from_args,
)
from embedded.demo import DemoEnvironment, DemoEnvironmentError, wait_until_polled
from embedded.logging import configure_logging
from embedded.process_exit import exit_now
from embedded.search_attributes import SEARCH_ATTRIBUTES
from embedded.temporal import DevServerError, TemporalDevServer

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "SEARCH_ATTRIBUTES",
    "ActivityLogContext",
    "ChildProcess",
    "ChildProcessError",
    "ClusterSimError",
    "ClusterSimInfo",
    "ClusterSimProcess",
    "ConnectionSettings",
    "ConnectionSettingsError",
    "DemoEnvironment",
    "DemoEnvironmentError",
    "DevServerError",
    "TemporalDevServer",
    "add_connection_arguments",
    "configure_logging",
    "connect",
    "exit_now",
    "log_tail",
    "settings_from_args",
    "wait_until_polled",
]
