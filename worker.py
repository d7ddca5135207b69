"""Temporal worker entry point: polls the llmd-rollout task queue and runs rollouts.

Where it sits: the process that executes workflows and activities (started by hand, by
docker-compose.yml, or in-process by the demo). It registers what workflows/registry.py and
activities/registry.py list, connects with embedded.connect, and on SIGTERM or SIGINT turns
/readyz to 503, stops polling and lets running activities finish within a grace period; long
activities heartbeat, so a retry on another worker resumes from their last heartbeat.

With `--metrics-port` it serves Prometheus metrics (the SDK's and the rollouts',
workflows/metrics.py) at /metrics; with `--health-port`, /healthz and /readyz (the chart's
probes, compose's health check). Every log line of an activity carries its workflow ID, run ID,
activity and target (embedded/activity_logging.py); the end of each activity wakes the asks of
this process that wait on its workflow (activities/cluster_news.py).

    python -m worker --address temporal:7233 --namespace default --task-queue llmd-rollout \
        --metrics-port 9464 --health-port 8081
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.cluster_news import ActivityEndNews
from activities.registry import activities
from embedded import (
    ActivityLogContext,
    ConnectionSettings,
    ConnectionSettingsError,
    add_connection_arguments,
    configure_logging,
    connect,
    exit_now,
    settings_from_args,
)
from embedded.health import HealthServer
from embedded.malloc_arenas import limit_malloc_arenas
from embedded.telemetry import prometheus_runtime
from k8s.informers import stop_shared_informers
from workflows.metrics import HISTOGRAM_BUCKETS
from workflows.registry import WORKFLOWS, workflow_runner

# Running activities get this long to finish after a shutdown signal before they are cancelled.
GRACEFUL_SHUTDOWN = timedelta(seconds=30)
HEARTBEAT_THROTTLE = timedelta(seconds=1)
# Synchronous activities (none today) run on these threads.
ACTIVITY_THREADS = 16
# Async activities run their blocking Kubernetes calls on the event loop's default executor
# (asyncio.to_thread), by default min(32, cores + 4) threads: 6 on a 2-core worker. A
# verification or an analysis holds one for minutes, so fifty rollouts' preflights queued
# behind a handful of threads and ran out of their budget (bench/concurrency.py at N=50).
# The threads mostly wait on the API server; idle ones cost a stack and nothing else.
BLOCKING_THREADS = 128
_WITH_BLOCKING_THREADS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def use_blocking_threads(loop: asyncio.AbstractEventLoop) -> None:
    """Give `loop` (once) a default executor sized for many concurrent rollouts; asyncio.run
    shuts a loop's default executor down when it ends."""
    if loop in _WITH_BLOCKING_THREADS:
        return
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=BLOCKING_THREADS, thread_name_prefix="llmd-blocking")
    )
    _WITH_BLOCKING_THREADS.add(loop)


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = structlog.get_logger("llmd.worker")
# Logged when a stop begins the graceful drain (tests read it to tell a drain from a kill).
SHUTTING_DOWN = "worker shutting down"


async def run_worker(
    client: Client,
    task_queue: str,
    workflows: Sequence[type],
    activity_functions: Sequence[Callable[..., Any]],
    shutdown: asyncio.Event,
    health: HealthServer | None = None,
) -> None:
    """Run a worker on `task_queue` until `shutdown` is set, then shut it down gracefully."""
    use_blocking_threads(asyncio.get_running_loop())
    with ThreadPoolExecutor(
        max_workers=ACTIVITY_THREADS, thread_name_prefix="llmd-activity"
    ) as activity_executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=list(workflows),
            workflow_runner=workflow_runner(),
            activities=list(activity_functions),
            activity_executor=activity_executor,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            # The SDK otherwise sends heartbeats at most every 0.8 x heartbeat timeout (8 s), and
            # the live view reads per-pod load progress from them.
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            interceptors=[ActivityLogContext(), ActivityEndNews()],
        )
        running = asyncio.create_task(worker.run())
        stop_requested = asyncio.create_task(shutdown.wait())
        if health is not None:
            health.ready = True
        await asyncio.wait({running, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if health is not None:
            # Out of the Service's endpoints first, while running activities finish.
            health.ready = False
        if not running.done():
            log.info(SHUTTING_DOWN, task_queue=task_queue)
            await worker.shutdown()
        stop_requested.cancel()
        try:
            # Re-raises a fatal worker error (e.g. the server rejected our namespace).
            await running
        finally:
            # The shared watches' threads, lingering after their last wait, would otherwise
            # still be reading when the interpreter finalizes (a crash at exit).
            left = await asyncio.to_thread(stop_shared_informers)
            if left:
                log.warning("watch threads still running at exit", threads=left)


@dataclass(frozen=True)
class Listeners:
    """Where the worker serves metrics and health; None turns each off."""

    host: str = "127.0.0.1"
    metrics_port: int | None = None
    health_port: int | None = None


async def serve(settings: ConnectionSettings, listeners: Listeners | None = None) -> int:
    listeners = listeners or Listeners()
    workflows, activity_functions = WORKFLOWS, activities()
    if not workflows and not activity_functions:
        log.error(
            "nothing to run: workflows/registry.py and activities/registry.py list nothing"
        )
        return EXIT_USAGE
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, shutdown.set)
    runtime = (
        None if listeners.metrics_port is None
        else prometheus_runtime(listeners.host, listeners.metrics_port, HISTOGRAM_BUCKETS)
    )
    health = (
        None if listeners.health_port is None
        else HealthServer(listeners.host, listeners.health_port)
    )
    try:
        if health is not None:
            await health.start()
        try:
            client = await connect(settings, runtime)
        except RuntimeError as error:
            log.error("cannot connect to Temporal", address=settings.address, error=str(error))
            return EXIT_FAILURE
        log.info(
            "worker polling",
            address=settings.address,
            namespace=settings.namespace,
            task_queue=settings.task_queue,
            workflows=[workflow.__name__ for workflow in workflows],
            activities=len(activity_functions),
            metrics_port=listeners.metrics_port,
            health_port=listeners.health_port,
        )
        await run_worker(
            client, settings.task_queue, workflows, activity_functions, shutdown, health
        )
    finally:
        if health is not None:
            await health.stop()
    log.info("worker stopped")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worker", description="Run an llmd-rollout Temporal worker."
    )
    add_connection_arguments(parser)
    served = parser.add_argument_group("metrics and health")
    served.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve Prometheus metrics at :PORT/metrics [env LLMD_METRICS_PORT]",
    )
    served.add_argument(
        "--health-port", type=int, default=None,
        help="serve /healthz and /readyz on PORT [env LLMD_HEALTH_PORT]",
    )
    served.add_argument(
        "--listen-host", default=None,
        help="address the metrics and health ports bind (default 127.0.0.1; 0.0.0.0 in a "
        "container) [env LLMD_LISTEN_HOST]",
    )
    return parser


def listeners_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Listeners:
    """Flag, else environment variable; a port that is not 1-65535 is refused naming it."""
    env = os.environ if environ is None else environ

    def port(flag: str, value: int | None, variable: str) -> int | None:
        if value is None:
            text = env.get(variable, "")
            if not text:
                return None
            if not text.isdigit():
                raise ConnectionSettingsError(f"{variable}={text!r} is not a port number")
            value, flag = int(text), variable
        if not 1 <= value <= 65535:
            raise ConnectionSettingsError(f"{flag}={value} is not a port (1-65535)")
        return value

    return Listeners(
        host=args.listen_host or env.get("LLMD_LISTEN_HOST") or "127.0.0.1",
        metrics_port=port("--metrics-port", args.metrics_port, "LLMD_METRICS_PORT"),
        health_port=port("--health-port", args.health_port, "LLMD_HEALTH_PORT"),
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    # Before any thread exists: a thread started earlier may already have its own arena.
    limit_malloc_arenas()
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        code = asyncio.run(serve(settings, listeners_from_args(args)))
    except ConnectionSettingsError as error:
        log.error("invalid connection settings", error=str(error))
        code = EXIT_USAGE
    except Exception:
        log.exception("worker failed")
        code = EXIT_FAILURE
    exit_now(code)


if __name__ == "__main__":
    main()
