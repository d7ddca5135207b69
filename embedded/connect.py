"""How the entry points find Temporal: settings from flags and environment, and the client.

Where it sits: worker.py and starter.py add the same flags with `add_connection_arguments`,
resolve them with `settings_from_args` (flag, then environment, then default) and call `connect`.
The environment names match the Temporal CLI's where the CLI has one (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY), so one shell environment serves both.

Every client gets the pydantic data converter: workflow inputs and results are pydantic models.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "llmd-rollout"


class ConnectionSettingsError(ValueError):
    """The connection settings are inconsistent; the message names the flag or variable."""


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the Temporal frontend is, how to authenticate, and which task queue we serve."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # Kept out of repr so that logging the settings never logs the key.
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConnectionSettingsError(
                "a TLS client certificate needs its private key and the other way round: "
                "set both --tls-cert/TEMPORAL_TLS_CERT and --tls-key/TEMPORAL_TLS_KEY, or neither"
            )

    @property
    def uses_tls(self) -> bool:
        """TLS is on when any TLS file or an API key is given (as the Temporal CLI decides)."""
        return any(
            value is not None for value in (self.tls_cert, self.tls_key, self.tls_ca, self.api_key)
        )

    def tls_config(self) -> TLSConfig | bool:
        """What `Client.connect(tls=...)` takes: False for plaintext, True for system roots."""
        if self.tls_cert is None and self.tls_ca is None:
            return self.uses_tls
        return TLSConfig(
            server_root_ca_cert=_read(self.tls_ca, "--tls-ca/TEMPORAL_TLS_CA"),
            client_cert=_read(self.tls_cert, "--tls-cert/TEMPORAL_TLS_CERT"),
            client_private_key=_read(self.tls_key, "--tls-key/TEMPORAL_TLS_KEY"),
        )


@dataclass(frozen=True)
class _Option:
    flag: str
    dest: str
    environment: str
    help: str


_OPTIONS = (
    _Option("--address", "address", "TEMPORAL_ADDRESS",
            f"Temporal frontend host:port (default {DEFAULT_ADDRESS})"),
    _Option("--namespace", "namespace", "TEMPORAL_NAMESPACE",
            f"Temporal namespace (default {DEFAULT_NAMESPACE})"),
    _Option("--task-queue", "task_queue", "LLMD_TASK_QUEUE",
            f"task queue the llmd-rollout workers poll (default {DEFAULT_TASK_QUEUE})"),
    _Option("--tls-cert", "tls_cert", "TEMPORAL_TLS_CERT", "path of the TLS client certificate"),
    _Option("--tls-key", "tls_key", "TEMPORAL_TLS_KEY", "path of the TLS client private key"),
    _Option("--tls-ca", "tls_ca", "TEMPORAL_TLS_CA", "path of the server's CA certificate"),
    _Option("--api-key", "api_key", "TEMPORAL_API_KEY",
            "API key (prefer the environment variable: flags show up in `ps`)"),
)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Temporal connection flags; each falls back to its environment variable."""
    group = parser.add_argument_group("Temporal connection")
    for option in _OPTIONS:
        group.add_argument(
            option.flag, dest=option.dest, default=None,
            help=f"{option.help} [env {option.environment}]",
        )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ConnectionSettings:
    """Resolve each setting: the flag if given, else its environment variable, else the default.

    An empty environment variable counts as unset, as compose files often pass `VAR=` through.
    """
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for option in _OPTIONS:
        flag_value: str | None = getattr(args, option.dest, None)
        value = flag_value if flag_value else env.get(option.environment, "")
        if value:
            values[option.dest] = value
    return ConnectionSettings(
        address=values.get("address", DEFAULT_ADDRESS),
        namespace=values.get("namespace", DEFAULT_NAMESPACE),
        task_queue=values.get("task_queue", DEFAULT_TASK_QUEUE),
        tls_cert=_path(values.get("tls_cert")),
        tls_key=_path(values.get("tls_key")),
        tls_ca=_path(values.get("tls_ca")),
        api_key=values.get("api_key"),
    )


async def connect(settings: ConnectionSettings) -> Client:
    """A client for `settings.namespace` with the pydantic data converter."""
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key,
        tls=settings.tls_config(),
        data_converter=pydantic_data_converter,
    )


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _read(path: Path | None, source: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConnectionSettingsError(
            f"cannot read {path} given by {source}: {error.strerror}"
        ) from error
