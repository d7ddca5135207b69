"""Tiny loopback HTTP servers the API server talks to in tests: a kubelet and a pod backend.

Both run `ThreadingHTTPServer` on a thread and are stopped (with a bounded join) by the
fixtures that start them.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

from clustersim.pki import issue_serving, load_or_create_ca


def kubelet_tls(pki: Path) -> ssl.SSLContext:
    """A kubelet serving context for 127.0.0.1, signed by the CA in `pki` (pki/ca.crt): the API
    server dials kubelets over HTTPS."""
    ca = load_or_create_ca(pki, "fake-kubelet-ca")
    return issue_serving(ca, pki, "kubelet", "fake-kubelet", ["127.0.0.1"], []).server_context()


LOG_LINES = [f"line {i}" for i in range(1, 6)]


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return


class KubeletHandler(_Quiet):
    """Serves `/containerLogs/{ns}/{pod}/{container}` like a kubelet, recording each query."""

    requests: ClassVar[list[tuple[str, dict[str, list[str]]]]] = []
    # a followed log of the container named "quiet" sends one line, then nothing until its
    # client leaves (at most QUIET_SECONDS); this is set when the kubelet sees it leave
    quiet_client_left: ClassVar[threading.Event] = threading.Event()
    QUIET_SECONDS = 20.0

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        type(self).requests.append((url.path, query))
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        _, namespace, pod, container = parts
        if container == "broken":
            body = f'previous terminated container "{container}" in pod "{pod}" not found'
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            return
        lines = [f"{namespace}/{pod}/{container} {line}" for line in LOG_LINES]
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"][0]) :]
        follow = query.get("follow", ["false"])[0] == "true"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if follow and container == "quiet":
            self._write_chunk(b"started\n")
            self._wait_for_the_client_to_leave()
            self.close_connection = True
            return
        for line in lines + (["followed 1", "followed 2"] if follow else []):
            chunk = (line + "\n").encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
            if follow:
                time.sleep(0.05)
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, chunk: bytes) -> None:
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()

    def _wait_for_the_client_to_leave(self) -> None:
        deadline = time.monotonic() + self.QUIET_SECONDS
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    # TLS sockets cannot peek; the client sends nothing more on this stream,
                    # so reading what arrived (EOF or close_notify) is just as good
                    if isinstance(self.connection, ssl.SSLSocket):
                        data = self.connection.recv(1)
                    else:
                        data = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    type(self).quiet_client_left.set()
                    return


class EchoHandler(_Quiet):
    """Answers every request with a JSON description of it (method, path, query, headers)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        answer = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "server": f"{self.server.server_address[0]}:{self.server.server_address[1]}",
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Backend", "echo")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer


@contextmanager
def serving(
    handler: type[BaseHTTPRequestHandler],
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
) -> Iterator[ThreadingHTTPServer]:
    """Serve `handler` on a thread; with `tls`, over HTTPS (a kubelet serves HTTPS)."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
