"""How the entry points find Temporal: settings from flags and environment, and the client.

Where it sits: worker.py and starter.py add the same flags with `add_connection_arguments`,
resolve them with `settings_from_args` (flag, then environment, then default) and call `connect`.
The environment names match the Temporal CLI's where the CLI has one (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY), so one shell environment serves both.

Every client gets the pydantic data converter: workflow inputs and results are pydantic models.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "llmd-rollout"


# A host name as gRPC resolves it: dot-separated labels of letters, digits, '-' and '_'.
_HOST_LABEL = r"[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")


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
            source = option.flag if flag_value else option.environment
            _check_value(option.dest, value, source)
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


def _check_value(dest: str, value: str, source: str) -> None:
    """Refuse a setting the client would choke on, naming where it came from (flag or variable)."""
    if dest == "address":
        problem = address_problem(value)
    elif dest in ("namespace", "task_queue") and (
        value != value.strip() or any(c.isspace() or not c.isprintable() for c in value)
    ):
        problem = "must not contain spaces or control characters"
    else:
        return
    if problem is not None:
        raise ConnectionSettingsError(f"{source}={value!r} {problem}")


def address_problem(address: str) -> str | None:
    """Why `address` is not a Temporal frontend `host:port`, or None when it is one."""
    example = "is not host:port (e.g. 127.0.0.1:7233 or temporal.example.com:7233)"
    host, separator, port = address.rpartition(":")
    if not separator or not host:
        return example
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"has no valid port ({port!r}; 1-65535 expected)"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return example
        return None
    if len(host) > 253 or not _HOST_NAME.match(host):
        return example
    return None


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
