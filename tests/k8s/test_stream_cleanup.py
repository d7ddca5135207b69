"""The streaming request helper gives a connection back only with its answer read to the end
(k8s/client.py `stream`, `discard`): a 429/5xx or an error Status answered to a watch or a log
follow leaves no unread bytes on the pooled connection, so the next request on that connection
reads its own answer, not the leftover (`ResponseNotReady('Request-sent')` before the fix).

A keep-alive HTTP/1.1 server on loopback answers each request in turn from a script and records
on which connection each arrived; the client has a pool of one connection, so every request
after the first reuses it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s_client

from k8s.client import KubeClient, KubeError


def _answer(status: int, reason: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def _status(code: int, reason: str, message: str) -> bytes:
    # Longer than one read: an undrained body is still on the socket when the next request goes.
    padding = "x" * 70_000
    return json.dumps({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
        "reason": reason, "message": message, "details": {"padding": padding},
    }).encode()


class ScriptedServer:
    """Answers request i with script[i], on whichever connection; records (connection, path)."""

    def __init__(self, script: list[bytes]) -> None:
        self.script = list(script)
        self.seen: list[tuple[int, str]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection_number = 0
        while self.script:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            connection_number += 1
            threading.Thread(
                target=self._connection, args=(conn, connection_number), daemon=True
            ).start()

    def _connection(self, conn: socket.socket, number: int) -> None:
        with conn:
            buffered = b""
            while self.script:
                while b"\r\n\r\n" not in buffered:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                path = head.split(b" ", 2)[1].decode()
                self.seen.append((number, path))
                conn.sendall(self.script.pop(0))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def kube_and_server(request: pytest.FixtureRequest) -> Iterator[tuple[KubeClient, ScriptedServer]]:
    server = ScriptedServer(request.param)
    configuration = k8s_client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.port}"
    configuration.connection_pool_maxsize = 1
    kube = KubeClient(k8s_client.ApiClient(configuration))
    try:
        yield kube, server
    finally:
        kube.close()
        server.close()


NODE_LIST = json.dumps({"kind": "NodeList", "apiVersion": "v1", "items": []}).encode()
FOLLOWED = b"loading weights 12%\nloading weights 40%\n"


@pytest.mark.parametrize(
    "kube_and_server",
    [[
        _answer(503, "Service Unavailable", _status(503, "ServiceUnavailable", "busy"),
                "Retry-After: 0\r\n"),
        _answer(200, "OK", FOLLOWED),
        _answer(200, "OK", NODE_LIST),
    ]],
    indirect=True,
)
def test_a_retried_5xx_on_a_stream_leaves_the_connection_clean(
    kube_and_server: tuple[KubeClient, ScriptedServer],
) -> None:
    """A 503 (with Retry-After) answered to a log follow is retried on the same connection; the
    stream, and the request after it, each read their own answer."""
    kube, server = kube_and_server
    response = kube.stream("/api/v1/namespaces/ns/pods/p/log", [("follow", "true")])
    try:
        assert response.data == FOLLOWED
    finally:
        response.release_conn()
    assert kube.request("GET", "/api/v1/nodes")["kind"] == "NodeList"
    assert [number for number, _ in server.seen] == [1, 1, 1], server.seen


@pytest.mark.parametrize(
    "kube_and_server",
    [[
        _answer(400, "Bad Request", _status(400, "BadRequest", "container is waiting to start")),
        _answer(200, "OK", NODE_LIST),
    ]],
    indirect=True,
)
def test_an_error_status_on_a_stream_is_read_before_the_connection_is_reused(
    kube_and_server: tuple[KubeClient, ScriptedServer],
) -> None:
    """A 400 Status answered to a log follow raises with the API server's message, and the
    connection serves the next request (a connection given back unread does not)."""
    kube, server = kube_and_server
    with pytest.raises(KubeError) as refused:
        kube.stream("/api/v1/namespaces/ns/pods/p/log", [("follow", "true")])
    assert refused.value.status == 400
    assert "container is waiting to start" in str(refused.value)
    assert kube.request("GET", "/api/v1/nodes")["kind"] == "NodeList"
    assert [number for number, _ in server.seen] == [1, 1], server.seen
