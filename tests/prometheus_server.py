"""A real Prometheus server (Debian's `prometheus` package) scraping a clustersim's vLLM pods.

The tests that compare the analysis' Prometheus source with its direct source run one of these
beside their simulated cluster. It is our own process (never the system service): a temporary
config, storage and a free loopback port, stopped by PID. Its targets are the model-service
pods' vLLM ports at their (loopback) pod IPs, kept current by a thread that lists the pods
through the API server and rewrites a file_sd targets file, labelled `pod` and `namespace` as
a Kubernetes scrape config would label them.

Without the binary a test skips with a message; under CI=true it fails instead (.ci/run
installs the package).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from k8s.client import KubeClient

BINARY_CANDIDATES = ("prometheus", "/usr/bin/prometheus")
SCRAPE_SECONDS = 1.0
READY_TIMEOUT = 60.0
ROLE_LABEL = "llm-d.ai/role"
# Where vLLM listens in the model-service pods (manifests.lws.vllm_port): behind the routing
# sidecar on decode pods, on the pool port on prefill pods.
VLLM_PORTS = {"decode": 8200, "prefill": 8000}


def prometheus_binary() -> str:
    """The binary's path; skips the test without it (fails it under CI=true)."""
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    message = (
        "no prometheus binary: `apt-get install -y prometheus` (Debian's package; .ci/run "
        "installs it) to run the Prometheus-source tests"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _targets(client: KubeClient, namespace: str) -> list[dict[str, object]]:
    pods, _ = client.list_objects("v1", "Pod", namespace, ROLE_LABEL)
    groups: list[dict[str, object]] = []
    for pod in pods:
        metadata, status = pod["metadata"], pod.get("status") or {}
        role = (metadata.get("labels") or {}).get(ROLE_LABEL)
        if not status.get("podIP") or role not in VLLM_PORTS:
            continue
        groups.append({
            "targets": [f"{status['podIP']}:{VLLM_PORTS[role]}"],
            "labels": {"pod": metadata["name"], "namespace": namespace, "role": role},
        })
    return groups


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]


class _TargetWriter(threading.Thread):
    """Rewrites the targets file while pods come and go (atomically: write, then rename)."""

    def __init__(self, client: KubeClient, namespace: str, path: Path) -> None:
        super().__init__(daemon=True)
        self.client, self.namespace, self.path = client, namespace, path
        self.stopped = threading.Event()
        self.last = ""

    def write(self) -> None:
        with contextlib.suppress(Exception):
            text = json.dumps(_targets(self.client, self.namespace), sort_keys=True)
            if text != self.last:
                scratch = self.path.with_suffix(".tmp")
                scratch.write_text(text)
                scratch.replace(self.path)
                self.last = text

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            self.write()


@contextlib.contextmanager
def running_prometheus(workdir: Path, client: KubeClient, namespace: str) -> Iterator[
    PrometheusServer
]:
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    targets = workdir / "targets.json"
    targets.write_text("[]")
    config = workdir / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE_SECONDS:g}s\n  scrape_timeout: {SCRAPE_SECONDS:g}s\n"
        "scrape_configs:\n  - job_name: vllm\n    file_sd_configs:\n"
        f"      - files: ['{targets}']\n        refresh_interval: 1s\n"
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with (workdir / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    writer = _TargetWriter(client, namespace, targets)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            assert process.poll() is None, f"prometheus exited; see {workdir / 'prometheus.log'}"
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        writer.start()
        yield PrometheusServer(url, process)
    finally:
        writer.stopped.set()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
