"""The one launcher of clustersim's own tests: `python -m clustersim ...` processes, stopped by PID.

`launch` starts `python -m clustersim ARGS` (its output in a log file), `wait_for_file` waits for
what it writes once it serves (a kubeconfig, an info file), `stop_process` ends it (SIGTERM, then
SIGKILL) and `clustersim_cli` runs a short command (`fault ...`, `serve --help`). On top of them,
`start_server` runs the API server alone (`serve --port 0`: HTTPS, bearer token, self-signed CA)
and `describe` says how to reach it; agent_fixtures.start_cluster runs `up` (server + agent).
These tests never import the product (llmd-rollout): clustersim is a distribution of its own.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

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


def launch(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m clustersim ARGS` in the background, stdout and stderr to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "clustersim", *args], stdout=output, stderr=subprocess.STDOUT
        )


def wait_for_file(
    path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = START_TIMEOUT
) -> None:
    """Wait until `process` has written `path` (clustersim writes its files whole, by rename);
    if it exits or the time runs out, stop it and fail with the end of its log."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise AssertionError(
                f"clustersim did not write {path}; its log ends with:\n"
                f"{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def clustersim_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m clustersim ARGS` to its end: (exit code, stdout, stderr) as text."""
    return subprocess.run(
        [sys.executable, "-m", "clustersim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_server(directory: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`clustersim serve --port 0` with its data in `directory`; returns once it serves."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    log = directory / "server.log"
    process = launch(
        [
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(directory),
            "--kubeconfig-out",
            str(kubeconfig),
            *extra,
        ],
        log,
    )
    wait_for_file(kubeconfig, process, log)
    return process, kubeconfig


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
