"""Which errors from the Kubernetes API (and from helm and kubectl talking to it) are worth a retry.

Where it sits: the one classification every caller shares. k8s/client.py asks `retryable_status`
whether an HTTP answer means "try again"; activities/failures.py and activities/helm.py ask
`classify_status` / `classify_text` what an error that left the plumbing means: retryable (the
API server is busy, restarting or unreachable: 5xx Status bodies of every shape, etcd and leader
timeouts, 429, refused or reset connections, TLS handshake and i/o timeouts, an expired watch)
or terminal (validation, Forbidden, NotFound). A Forbidden answer is parsed into who may not do
what where, so the failure names the verb, the resource and the namespace. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k8s.forbidden import Forbidden, forbidden_in

# HTTP answers that mean "the server could not handle it now", never "the request is wrong".
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# What a busy, restarting or unreachable API server looks like in a Status message, in client-go
# error strings (helm and kubectl print those) and in Python's own connection errors.
_RETRYABLE_TEXT = re.compile(
    "|".join(
        (
            # Status bodies: the reason names apimachinery writes, and client-go's wording of a
            # 5xx body it could not decode.
            r"\((?:429|5\d\d)\s*\w*\)",
            r"\b(?:InternalError|ServiceUnavailable|ServerTimeout|TooManyRequests)\b",
            r"Internal error occurred",
            r"an error on the server .*has prevented the request from succeeding",
            r"the server is currently unable to handle the request",
            r"the server has received too many requests",
            r"the server was unable to return a response in the time allotted",
            r"Timeout: request did not complete within",
            r"Too Many Requests|Internal Server Error|Service Unavailable|Bad Gateway"
            r"|Gateway Timeout",
            # etcd and leader election behind the API server.
            r"etcdserver: (?:request timed out|leader changed|too many requests|no leader)",
            r"rpc error: code = Unavailable",
            # The connection itself.
            r"connection refused|connection reset|broken pipe|i/o timeout|TLS handshake timeout",
            r"http2: client connection lost|client connection force closed|unexpected EOF",
            r"(?:^|[\s:])EOF$",
            r"context deadline exceeded \(Client\.Timeout",
            r"unexpected error when reading response body",
            r"ProtocolError|RemoteDisconnected|ResponseNotReady|ReadTimeoutError"
            r"|ConnectTimeoutError|NewConnectionError|MaxRetryError",
            # Helm's release storage (a Secret) could not be written or deleted: helm wraps the
            # API server's answer away, and only the API server makes these fail.
            r"failed to delete release: |Failed to purge the release",
            # A watch the server ended or expired: list and watch again.
            r"too old resource version|watch (?:channel|stream) (?:was )?closed",
        )
    ),
    re.IGNORECASE | re.MULTILINE,
)

_FORBIDDEN_STATUS = re.compile(r"\(403\s*\w*\)|\bforbidden\b", re.IGNORECASE)


@dataclass(frozen=True)
class ErrorClass:
    """What an error means: retry it, or stop (a permission problem named when there is one)."""

    retryable: bool
    permission: Forbidden | None = None


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES


def retryable_text(text: str) -> bool:
    return bool(_RETRYABLE_TEXT.search(text))


def classify_status(status: int, body: Mapping[str, Any] | None, message: str) -> ErrorClass:
    """An API answer: its HTTP status, its Status body (if any) and the message we built."""
    document = body or {}
    reason = str(document.get("reason") or "")
    text = f"{document.get('message') or ''} {message}"
    if status == 403 or reason == "Forbidden":
        found = forbidden_in(text)
        return ErrorClass(False, found or _permission_from_details(document))
    if status == 0 or retryable_status(status):
        return ErrorClass(True)
    if reason in ("InternalError", "ServiceUnavailable", "ServerTimeout", "Timeout", "Expired"):
        return ErrorClass(True)
    return ErrorClass(False)


def classify_text(text: str) -> ErrorClass:
    """What a command's error output (helm, kubectl: client-go's wording) means."""
    permission = forbidden_in(text)
    if permission is not None:
        return ErrorClass(False, permission)
    if _FORBIDDEN_STATUS.search(text) and not retryable_text(text):
        return ErrorClass(False)
    return ErrorClass(retryable_text(text))


def _permission_from_details(document: Mapping[str, Any]) -> Forbidden:
    """A Forbidden answer whose message is not apimachinery's sentence: what its details say."""
    details = document.get("details") or {}
    return Forbidden(
        user="",
        verb="access",
        resource=str(details.get("kind") or "resource"),
        group=str(details.get("group") or ""),
    )
