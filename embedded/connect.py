"""How the entry points find Temporal: a connection profile, environment and flags, and the client.

Where it sits: worker.py and starter.py add the same flags with `add_connection_arguments`,
resolve them with `settings_from_args` and call `connect`. Settings are loaded the way the
`temporal` CLI loads them, through the SDK's `temporalio.envconfig`, in its documented
precedence, lowest first:

1. the profile (`--profile`/`TEMPORAL_PROFILE`, else `default`) of the TOML file
   `--config-file`/`TEMPORAL_CONFIG_FILE` names, else `~/.config/temporalio/temporal.toml`;
2. environment variables (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
   `TEMPORAL_TLS_CLIENT_CERT_PATH`, `TEMPORAL_TLS_CLIENT_KEY_PATH`,
   `TEMPORAL_TLS_SERVER_CA_CERT_PATH`, `TEMPORAL_TLS_SERVER_NAME`, `TEMPORAL_TLS`, ...);
3. our flags (`--address`, `--namespace`, `--api-key`, `--tls-cert`, `--tls-key`, `--tls-ca`,
   `--tls-server-name`).

So one profile file serves the `temporal` CLI, `llmd-rollout` and the worker. The task queue is
ours (`--task-queue`/`LLMD_TASK_QUEUE`). A setting the client would choke on is refused in one line
naming where it came from (the flag, the variable or the profile). Every client gets the pydantic
data converter: workflow inputs and results are pydantic models.
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
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, DataSource
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "llmd-rollout"
DEFAULT_PROFILE = "default"


# A host name as gRPC resolves it: dot-separated labels of letters, digits, '-' and '_'.
_HOST_LABEL = r"[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")


class ConnectionSettingsError(ValueError):
    """The connection settings are inconsistent; the message names the flag, variable or profile."""


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the Temporal frontend is, how to authenticate, and which task queue we serve."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    # Kept out of repr so that logging the settings never logs the key.
    api_key: str | None = field(default=None, repr=False)
    # None: TLS not configured (on only with an API key, as the Temporal CLI decides).
    tls: ClientConfigTLS | None = None
    # gRPC headers from the profile or TEMPORAL_GRPC_META_*; may carry credentials.
    rpc_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Setting name -> where its value came from, for error messages.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        tls = self.tls or ClientConfigTLS()
        if (tls.client_cert is None) != (tls.client_private_key is None):
            raise ConnectionSettingsError(
                "a TLS client certificate needs its private key and the other way round: set "
                f"both {_TLS_CERT.names} and {_TLS_KEY.names} (or client_cert_path and "
                "client_key_path in the profile's [tls]), or neither"
            )

    @property
    def uses_tls(self) -> bool:
        if self.tls is not None:
            return self.tls.disabled is not True
        return self.api_key is not None

    def tls_config(self) -> TLSConfig | bool:
        """What `Client.connect(tls=...)` takes: False for plaintext, True for system roots."""
        tls = self.tls
        if tls is None or tls.disabled is True or _no_tls_files(tls):
            return self.uses_tls
        return TLSConfig(
            domain=tls.server_name,
            server_root_ca_cert=self._read(tls.server_root_ca_cert, "tls_ca"),
            client_cert=self._read(tls.client_cert, "tls_cert"),
            client_private_key=self._read(tls.client_private_key, "tls_key"),
        )

    def _read(self, source: DataSource | None, setting: str) -> bytes | None:
        if source is None or isinstance(source, bytes):
            return source
        if isinstance(source, str):
            return source.encode()
        try:
            return source.read_bytes()
        except OSError as error:
            named_by = self.sources.get(setting, _OPTIONS_BY_DEST[setting].names)
            raise ConnectionSettingsError(
                f"cannot read {source} given by {named_by}: {error.strerror}"
            ) from error


@dataclass(frozen=True)
class _Option:
    flag: str
    dest: str
    environment: str
    help: str

    @property
    def names(self) -> str:
        return f"{self.flag}/{self.environment}"


_ADDRESS = _Option("--address", "address", "TEMPORAL_ADDRESS",
                   f"Temporal frontend host:port (default {DEFAULT_ADDRESS})")
_NAMESPACE = _Option("--namespace", "namespace", "TEMPORAL_NAMESPACE",
                     f"Temporal namespace (default {DEFAULT_NAMESPACE})")
_TASK_QUEUE = _Option("--task-queue", "task_queue", "LLMD_TASK_QUEUE",
                      f"task queue the llmd-rollout workers poll (default {DEFAULT_TASK_QUEUE})")
_API_KEY = _Option("--api-key", "api_key", "TEMPORAL_API_KEY",
                   "API key, e.g. for Temporal Cloud (prefer the variable or a profile: flags "
                   "show up in `ps`)")
_TLS_CERT = _Option("--tls-cert", "tls_cert", "TEMPORAL_TLS_CLIENT_CERT_PATH",
                    "path of the TLS client certificate")
_TLS_KEY = _Option("--tls-key", "tls_key", "TEMPORAL_TLS_CLIENT_KEY_PATH",
                   "path of the TLS client private key")
_TLS_CA = _Option("--tls-ca", "tls_ca", "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
                  "path of the server's CA certificate")
_TLS_SERVER_NAME = _Option("--tls-server-name", "tls_server_name", "TEMPORAL_TLS_SERVER_NAME",
                           "server name the server's certificate must carry (SNI)")
_PROFILE = _Option("--profile", "profile", "TEMPORAL_PROFILE",
                   f"profile of the Temporal config file to use (default {DEFAULT_PROFILE})")
_CONFIG_FILE = _Option("--config-file", "config_file", "TEMPORAL_CONFIG_FILE",
                       "Temporal config file (TOML, as the temporal CLI reads; default "
                       "~/.config/temporalio/temporal.toml)")

_OPTIONS = (
    _ADDRESS, _NAMESPACE, _TASK_QUEUE, _PROFILE, _CONFIG_FILE, _API_KEY, _TLS_CERT, _TLS_KEY,
    _TLS_CA, _TLS_SERVER_NAME,
)
_OPTIONS_BY_DEST = {option.dest: option for option in _OPTIONS}


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Temporal connection flags; each falls back to its variable, then the profile."""
    group = parser.add_argument_group("Temporal connection")
    for option in _OPTIONS:
        group.add_argument(
            option.flag, dest=option.dest, default=None,
            help=f"{option.help} [env {option.environment}]",
        )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ConnectionSettings:
    """Resolve the settings: flag, else environment variable, else profile, else default.

    An empty environment variable counts as unset, as compose files often pass `VAR=` through.
    """
    env = {key: value for key, value in (os.environ if environ is None else environ).items()
           if value}
    flags = {option.dest: value for option in _OPTIONS
             if (value := getattr(args, option.dest, None))}
    profile_name = flags.get("profile") or env.get(_PROFILE.environment)
    profile, where = _load_profile(profile_name, flags.get("config_file"), env)

    def source(dest: str, from_profile: str) -> str:
        option = _OPTIONS_BY_DEST[dest]
        if dest in flags:
            return option.flag
        if option.environment in env:
            return option.environment
        return f"{from_profile} of {where}"

    sources = {
        "address": source("address", "address"),
        "namespace": source("namespace", "namespace"),
        "api_key": source("api_key", "api_key"),
        "tls_cert": source("tls_cert", "tls.client_cert_path"),
        "tls_key": source("tls_key", "tls.client_key_path"),
        "tls_ca": source("tls_ca", "tls.server_ca_cert_path"),
    }
    address = flags.get("address") or profile.address or DEFAULT_ADDRESS
    namespace = flags.get("namespace") or profile.namespace or DEFAULT_NAMESPACE
    task_queue = flags.get("task_queue") or env.get(_TASK_QUEUE.environment) or DEFAULT_TASK_QUEUE
    if flags.get("address") or profile.address:
        _check("address", address, sources["address"])
    if flags.get("namespace") or profile.namespace:
        _check("namespace", namespace, sources["namespace"])
    _check("task_queue", task_queue, source("task_queue", "task queue"))
    return ConnectionSettings(
        address=address,
        namespace=namespace,
        task_queue=task_queue,
        api_key=flags.get("api_key") or profile.api_key,
        tls=_tls_with_flags(profile.tls, flags),
        rpc_metadata=dict(profile.grpc_meta),
        sources=sources,
    )


async def connect(settings: ConnectionSettings, runtime: Runtime | None = None) -> Client:
    """A client for `settings.namespace` with the pydantic data converter.

    `runtime` carries the worker's telemetry (its Prometheus exporter); None: the SDK default.
    """
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key,
        tls=settings.tls_config(),
        rpc_metadata=settings.rpc_metadata,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )


def _load_profile(
    name: str | None, config_file_flag: str | None, env: dict[str, str]
) -> tuple[ClientConfigProfile, str]:
    """The profile with the environment applied, and a phrase naming where it came from."""
    config_file = config_file_flag or env.get(_CONFIG_FILE.environment)
    if config_file is not None:
        named_by = _CONFIG_FILE.flag if config_file_flag else _CONFIG_FILE.environment
        path = Path(config_file).expanduser()
        if not path.exists() or path.is_dir():
            raise ConnectionSettingsError(f"{named_by}={config_file!r}: no such file")
    profile = name or DEFAULT_PROFILE
    where = f"profile {profile!r}" + (f" in {config_file}" if config_file else "")
    try:
        loaded = ClientConfigProfile.load(
            name,
            config_source=Path(config_file).expanduser() if config_file else None,
            override_env_vars=env,
        )
    except RuntimeError as error:
        # The SDK's ConfigError: a TOML syntax error or a profile the file does not have.
        raise ConnectionSettingsError(f"{where}: {_first_line(error)}") from None
    return loaded, where


def _tls_with_flags(
    tls: ClientConfigTLS | None, flags: Mapping[str, str]
) -> ClientConfigTLS | None:
    """The profile's TLS section with our TLS flags laid over it (flags win)."""
    if not flags.keys() & {"tls_cert", "tls_key", "tls_ca", "tls_server_name"}:
        return tls
    base = tls or ClientConfigTLS()

    def path(dest: str, current: DataSource | None) -> DataSource | None:
        return Path(flags[dest]).expanduser() if dest in flags else current

    return ClientConfigTLS(
        disabled=base.disabled,
        server_name=flags.get("tls_server_name", base.server_name),
        server_root_ca_cert=path("tls_ca", base.server_root_ca_cert),
        client_cert=path("tls_cert", base.client_cert),
        client_private_key=path("tls_key", base.client_private_key),
    )


def _no_tls_files(tls: ClientConfigTLS) -> bool:
    return (
        tls.client_cert is None and tls.server_root_ca_cert is None and tls.server_name is None
    )


def _check(dest: str, value: str, source: str) -> None:
    """Refuse a setting the client would choke on, naming where it came from."""
    if dest == "address":
        problem = address_problem(value)
    elif value != value.strip() or any(c.isspace() or not c.isprintable() for c in value):
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


def _first_line(error: Exception) -> str:
    """The SDK's message on one line, without the TOML excerpt's gutter lines."""
    gutter = re.compile(r"^(\d+\s*)?\|")
    kept = [line.strip() for line in str(error).splitlines()
            if line.strip() and not gutter.match(line.strip())]
    return "; ".join(kept)
