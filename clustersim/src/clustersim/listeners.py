"""Listening sockets for every clustersim server (API server, agent admin endpoint, kubelets).

A port the user named must be the port served: when it is taken, `listen_on` raises
`PortInUseError` with a one-line message, and the CLIs turn it into a non-zero exit. Only where a
fallback is part of the contract (a kubelet prefers 10250 but takes any free port, as the node
advertises its port) does `listen_preferring` pick another.
"""

from __future__ import annotations

import socket


class PortInUseError(OSError):
    """A fixed port could not be bound; the message names the address and who wanted it."""


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR lets a restarted server reuse a port in TIME_WAIT; it never lets two
    # listeners share one on Linux, so a busy port still fails below.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listen_on(host: str, port: int, purpose: str) -> socket.socket:
    """A socket bound to host:port (0: any free port); a busy fixed port is an error."""
    try:
        return _bound(host, port)
    except OSError as error:
        raise PortInUseError(
            error.errno or 0,
            f"cannot listen on {host}:{port} for the {purpose}: {error.strerror or error}",
        ) from error


def listen_preferring(host: str, preferred_port: int) -> socket.socket:
    """A socket bound to host: the preferred port when free, else any free port."""
    try:
        return _bound(host, preferred_port)
    except OSError:
        return listen_on(host, 0, f"listener on {host}")
