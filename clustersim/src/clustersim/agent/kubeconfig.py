"""Kubeconfig loading: the server URL, bearer token and TLS material of the current context.

Supports what clustersim's own kubeconfig and typical real clusters use: `token`/`tokenFile`,
client certificates (inline or files), `certificate-authority(-data)` and
`insecure-skip-tls-verify`. Exec plugins are out of scope (the error says so).
"""

from __future__ import annotations

import base64
import pathlib
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

import yaml


class KubeconfigError(ValueError):
    """A kubeconfig the agent cannot use; the message names the file and entry."""


@dataclass(frozen=True)
class ClusterCredentials:
    server: str
    token: str | None
    ca_pem: bytes | None
    insecure: bool
    client_cert_pem: bytes | None
    client_key_pem: bytes | None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp's `ssl=` wants: False for plain HTTP or insecure TLS."""
        if not self.server.startswith("https://"):
            return False
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            context = ssl.create_default_context(cadata=self.ca_pem.decode())
        else:
            context = ssl.create_default_context()
        if self.client_cert_pem and self.client_key_pem:
            # ssl only loads client certificates from files; they live for this call only.
            with tempfile.TemporaryDirectory() as tmp:
                cert = pathlib.Path(tmp, "client.crt")
                key = pathlib.Path(tmp, "client.key")
                cert.write_bytes(self.client_cert_pem)
                key.write_bytes(self.client_key_pem)
                key.chmod(0o600)
                context.load_cert_chain(str(cert), str(key))
        return context


def _named(entries: Any, name: str, what: str, source: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(what)
            return value if isinstance(value, dict) else {}
    raise KubeconfigError(f"{source}: no {what} named {name!r}")


def _data_or_file(entry: dict[str, Any], key: str, base: pathlib.Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(key)
    if path:
        resolved = pathlib.Path(path)
        if not resolved.is_absolute():
            resolved = base / resolved
        return resolved.read_bytes()
    return None


def load_kubeconfig(path: str | pathlib.Path, context: str | None = None) -> ClusterCredentials:
    source = pathlib.Path(path)
    try:
        config = yaml.safe_load(source.read_text())
    except OSError as error:
        raise KubeconfigError(f"cannot read kubeconfig {source}: {error}") from error
    if not isinstance(config, dict):
        raise KubeconfigError(f"{source} is not a kubeconfig (expected a YAML mapping)")
    context_name = context or config.get("current-context")
    if not context_name:
        raise KubeconfigError(f"{source}: no current-context; pass a context name")
    ctx = _named(config.get("contexts"), str(context_name), "context", str(source))
    cluster = _named(config.get("clusters"), str(ctx.get("cluster")), "cluster", str(source))
    user = _named(config.get("users"), str(ctx.get("user")), "user", str(source))
    if "exec" in user or "auth-provider" in user:
        raise KubeconfigError(
            f"{source}: user {ctx.get('user')!r} uses an exec/auth-provider plugin; "
            "give the agent a kubeconfig with a bearer token or client certificate"
        )
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError(f"{source}: cluster {ctx.get('cluster')!r} has no server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = pathlib.Path(user["tokenFile"]).read_text().strip()
    base = source.parent
    return ClusterCredentials(
        server=server,
        token=str(token) if token else None,
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        client_cert_pem=_data_or_file(user, "client-certificate", base),
        client_key_pem=_data_or_file(user, "client-key", base),
    )
