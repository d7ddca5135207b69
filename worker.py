"""Temporal worker entry point: polls the llmd-rollout task queue and runs rollouts.

Where it sits: the process that executes workflows and activities (started by hand, by
docker-compose.yml, or in-process by the demo). It registers what workflows/registry.py and
activities/registry.py list, connects with embedded.connect, and on SIGTERM or SIGINT stops
polling and lets running activities finish within a grace period; long activities heartbeat, so
a retry on another worker resumes from their last heartbeat.

    python -m worker --address temporal:7233 --namespace default --task-queue llmd-rollout
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, NoReturn

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.registry import activities
from embedded import (
    ConnectionSettings,
    ConnectionSettingsError,
    add_connection_arguments,
    configure_logging,
    connect,
    exit_now,
    settings_from_args,
)
from workflows import WORKFLOWS

# Activities that call the (synchronous) Kubernetes client or helm run on these threads.
ACTIVITY_THREADS = 16
# Running activities get this long to finish after a shutdown signal before they are cancelled.
GRACEFUL_SHUTDOWN = timedelta(seconds=30)
HEARTBEAT_THROTTLE = timedelta(seconds=1)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = structlog.get_logger("llmd.worker")


async def run_worker(
    client: Client,
    task_queue: str,
    workflows: Sequence[type],
    activity_functions: Sequence[Callable[..., Any]],
    shutdown: asyncio.Event,
) -> None:
    """Run a worker on `task_queue` until `shutdown` is set, then shut it down gracefully."""
    with ThreadPoolExecutor(
        max_workers=ACTIVITY_THREADS, thread_name_prefix="llmd-activity"
    ) as activity_executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=list(workflows),
            activities=list(activity_functions),
            activity_executor=activity_executor,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            # The SDK otherwise sends heartbeats at most every 0.8 x heartbeat timeout (8 s), and
            # the live view reads per-pod load progress from them.
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        )
        running = asyncio.create_task(worker.run())
        stop_requested = asyncio.create_task(shutdown.wait())
        await asyncio.wait({running, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            log.info("worker shutting down", task_queue=task_queue)
            await worker.shutdown()
        stop_requested.cancel()
        # Re-raises a fatal worker error (e.g. the server rejected our namespace).
        await running


async def serve(settings: ConnectionSettings) -> int:
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
    try:
        client = await connect(settings)
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
    )
    await run_worker(client, settings.task_queue, workflows, activity_functions, shutdown)
    log.info("worker stopped")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worker", description="Run an llmd-rollout Temporal worker."
    )
    add_connection_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        code = asyncio.run(serve(settings))
    except ConnectionSettingsError as error:
        log.error("invalid connection settings", error=str(error))
        code = EXIT_USAGE
    except Exception:
        log.exception("worker failed")
        code = EXIT_FAILURE
    exit_now(code)


if __name__ == "__main__":
    main()
