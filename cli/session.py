"""The Temporal connection of one command: the client and the settings it came from.

Where it sits: commands that talk to Temporal open a `Session` from their parsed flags (the same
flags and environment variables as worker.py, embedded.connect); the task queue travels with it
because starts and the "is a worker polling?" hint need it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from temporalio.client import Client

from cli.errors import explain
from embedded import ConnectionSettings, connect, settings_from_args


@dataclass(frozen=True)
class Session:
    client: Client
    settings: ConnectionSettings

    @property
    def task_queue(self) -> str:
        return self.settings.task_queue

    @property
    def namespace(self) -> str:
        return self.settings.namespace


async def open_session(args: argparse.Namespace) -> Session:
    """Connect as the flags and environment say; unreachable or misconfigured -> CliError."""
    settings = settings_from_args(args)
    try:
        client = await connect(settings)
    except (RuntimeError, OSError) as error:
        explained = explain(error, address=settings.address)
        if explained is None:
            raise
        raise explained from None
    return Session(client, settings)
