"""What the simulated cluster itself spends: pod lifetimes from creation to Ready, from a watch.

Used by the benchmarks to measure orchestration overhead directly: a rollout's wall time minus
the time the cluster was busy bringing its pods up (image pulls, container starts, model loads,
which clustersim simulates), read from a watch of every pod with this machine's clock. The
busy time of a rollout is the union of [created, Ready] of the pods in its namespaces during its
window, so waits that overlap count once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

_CONFIG: Any = k8s_config
_WATCH: Any = k8s_watch
USER_AGENT = "llmd-bench/1"  # so clustersim does not count our watch as the worker's requests


@dataclass
class PodLife:
    namespace: str
    created: float
    ready: float | None = None
    gone: float | None = None

    def end(self, now: float) -> float:
        return self.ready or self.gone or now


class PodTimeline:
    """A thread watching every pod; `busy(namespaces, start, end)` reads the result."""

    def __init__(self, kubeconfig: Path) -> None:
        api: Any = _CONFIG.new_client_from_config(config_file=str(kubeconfig))
        api.user_agent = USER_AGENT
        self._pods = k8s_client.CoreV1Api(api)
        self._lives: dict[str, PodLife] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            stream = _WATCH.Watch()
            try:
                for event in stream.stream(
                    self._pods.list_pod_for_all_namespaces, timeout_seconds=5,
                    resource_version=version, _preload_content=True,
                ):
                    self._note(event["type"], event["object"])
                    version = event["object"].metadata.resource_version
                    if self._stop.is_set():
                        stream.stop()
                        return
            except Exception:
                version = None
                time.sleep(0.2)

    def _note(self, kind: str, pod: Any) -> None:
        now = time.time()
        key = f"{pod.metadata.namespace}/{pod.metadata.name}/{pod.metadata.uid}"
        with self._lock:
            life = self._lives.setdefault(key, PodLife(pod.metadata.namespace, now))
            if kind == "DELETED":
                life.gone = life.gone or now
                return
            ready = any(
                c.type == "Ready" and c.status == "True"
                for c in (pod.status.conditions or [])
            )
            if ready and life.ready is None:
                life.ready = now

    def busy(self, namespaces: set[str], start: float, end: float) -> float:
        """Seconds within [start, end] during which a pod of `namespaces` was coming up."""
        with self._lock:
            intervals = sorted(
                (max(start, life.created), min(end, life.end(end)))
                for life in self._lives.values()
                if life.namespace in namespaces
            )
        total, covered_until = 0.0, start
        for low, high in intervals:
            low = max(low, covered_until)
            if high > low:
                total += high - low
                covered_until = high
        return total

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
