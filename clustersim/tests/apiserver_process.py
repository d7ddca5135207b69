"""A clustersim API server process for tests: start it, describe how to reach it, stop it by PID.

`apiserver` runs `python -m clustersim serve --port 0` as a subprocess on loopback (HTTPS, bearer
token, self-signed CA) and stops it by PID at the end of the session. Tests that write use their
own uuid-suffixed namespace (`namespace` fixture) so they never see each other's objects.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class RunningApiServer:
    """A clustersim API server process and how to reach it."""

    url: str
    kubeconfig: Path
    token: str
    ca_path: Path
    pid: int

    def kube_api_client(self) -> k8s.ApiClient:
        return k8s_config.new_client_from_config(str(self.kubeconfig))

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> RawResponse:
        """One raw HTTPS request with the bearer token (for what typed clients cannot send)."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        data = (
            None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": content_type,
                "Accept": accept,
            },
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return RawResponse(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return RawResponse(error.code, dict(error.headers.items()), error.read())

    def admin(self, method: str, path: str, body: object = None) -> RawResponse:
        """Call the admin endpoint (`/clustersim/admin/...`)."""
        return self.request(method, f"/clustersim/admin{path}", {} if body is None else body)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def start_server(directory: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clustersim",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(directory),
            "--kubeconfig-out",
            str(kubeconfig),
            *extra,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while not kubeconfig.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            output = (directory / "server.log").read_text()
            raise RuntimeError(f"clustersim did not start:\n{output}")
        time.sleep(0.05)
    return process, kubeconfig


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def describe(
    process: subprocess.Popen[bytes], kubeconfig: Path, directory: Path
) -> RunningApiServer:
    config = yaml.safe_load(kubeconfig.read_text())
    return RunningApiServer(
        url=config["clusters"][0]["cluster"]["server"],
        kubeconfig=kubeconfig,
        token=config["users"][0]["user"]["token"],
        ca_path=directory / "pki" / "ca.crt",
        pid=process.pid,
    )


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll `predicate()` until it is truthy, failing after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
