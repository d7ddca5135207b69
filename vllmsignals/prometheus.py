"""Reading the analysis window from a Prometheus server instead of the pods themselves.

Where it sits: the analysis activity's Prometheus source (activities/analysis.py) for teams
whose Prometheus already scrapes the vLLM pods (`analysis.prometheus` in the spec). Each window
is one query per metric, the growth of each series over the window summed by pod (and bucket
bound or status), at the end of the window; the answer becomes the same PodSignals the direct
source produces, so the judgement (vllmsignals/analysis.py) cannot tell the sources apart.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from spec.analysis import PrometheusSource
from vllmsignals.analysis import (
    COMPLETION_HANDLERS,
    HISTOGRAMS,
    HTTP_REQUESTS,
    KV_TRANSFER,
    REQUEST_SUCCESS,
    Histogram,
    PodSignals,
    pod_signals,
)


class PrometheusError(RuntimeError):
    """The server could not answer a query; the message names the query and what came back."""


def _bound(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf") else float(text)


def window_delta(series: str, span: str) -> str:
    """A counter's growth over `span`, as the direct source computes it from two reads: the
    value now minus the value `span` ago, a series born inside the window counting from zero
    (increase() would miss its first value: vLLM creates the 5xx series with the first error),
    and a series that went backwards (a restarted pod) counting from its restart."""
    return f"(({series} - ({series} offset {span} or {series} * 0)) >= 0 or {series})"


class PrometheusQuery:
    def __init__(self, source: PrometheusSource, namespace: str) -> None:
        self.source = source
        self.namespace = namespace

    def _selector(self, pods: Iterable[str], extra: str = "") -> str:
        # A regular expression inside a PromQL string literal: its backslashes doubled.
        names = "|".join(re.escape(p).replace("\\", "\\\\") for p in sorted(pods))
        parts = [
            f'{self.source.namespace_label}="{self.namespace}"',
            f'{self.source.pod_label}=~"{names}"',
        ]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}"

    def query(self, promql: str, at: float | None = None) -> list[Mapping[str, Any]]:
        """An instant query (now, or at the Unix time `at`); its vector's samples (labels
        under `metric`, value under `value`)."""
        url = self.source.url.rstrip("/") + "/api/v1/query"
        timeout = self.source.request_timeout.total_seconds()
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = httpx.get(url, params=params, timeout=timeout)
            document = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise PrometheusError(f"Prometheus {url} query {promql!r}: {error}") from error
        if response.status_code != 200 or document.get("status") != "success":
            raise PrometheusError(
                f"Prometheus {url} query {promql!r}: HTTP {response.status_code}, "
                f"{document.get('error') or document}"
            )
        result: list[Mapping[str, Any]] = document["data"]["result"]
        return result

    def _by_pod(
        self, promql: str, at: float, *labels: str
    ) -> dict[str, dict[tuple[str, ...], float]]:
        found: dict[str, dict[tuple[str, ...], float]] = {}
        for sample in self.query(promql, at):
            metric = sample.get("metric") or {}
            pod = str(metric.get(self.source.pod_label, ""))
            value = float(sample["value"][1])
            if math.isnan(value):
                continue
            key = tuple(str(metric.get(label, "")) for label in labels)
            found.setdefault(pod, {})[key] = value
        return found

    def window_signals(
        self, pods: list[str], window_seconds: float, ended_at: float | None = None
    ) -> dict[str, PodSignals]:
        """Each pod's growth over a window that ends now (read after one scrape interval, so
        the window's last requests are scraped) or ended at the Unix time `ended_at` (read as
        of then: later, a pod deleted since has only stale series)."""
        if not pods:
            return {}
        settle = 0.0
        if ended_at is None:
            settle = self.source.scrape_interval.total_seconds()
            time.sleep(settle)
            at = time.time()
        else:
            at = ended_at
        span = f"{math.ceil((window_seconds + settle) * 1000)}ms"
        pod = self.source.pod_label

        def moved(series: str, by: str, *labels: str) -> dict[str, dict[tuple[str, ...], float]]:
            return self._by_pod(f"sum by ({by}) ({window_delta(series, span)})", at, *labels)

        histograms: dict[str, dict[str, Histogram]] = {}
        for name in HISTOGRAMS:
            rows = moved(f"{name}_bucket{self._selector(pods)}", f"{pod}, le", "le")
            for name_of_pod, buckets in rows.items():
                histograms.setdefault(name_of_pod, {})[name] = Histogram(
                    tuple(sorted((_bound(le), count) for (le,), count in buckets.items()))
                )
        handlers = 'handler=~"' + "|".join(COMPLETION_HANDLERS) + '"'
        statuses = moved(f"{HTTP_REQUESTS}{self._selector(pods, handlers)}", f"{pod}, status",
                         "status")
        success = moved(f"{REQUEST_SUCCESS}{self._selector(pods)}", pod)
        transfers = moved(f"{KV_TRANSFER}_count{self._selector(pods)}", pod)
        signals: dict[str, PodSignals] = {}
        for name_of_pod in set(histograms) | set(statuses) | set(success):
            by_status: dict[str, float] = {}
            for (status,), value in statuses.get(name_of_pod, {}).items():
                by_status[status[:1]] = by_status.get(status[:1], 0.0) + value
            signals[name_of_pod] = pod_signals(
                histograms.get(name_of_pod, {}),
                by_status,
                sum(success.get(name_of_pod, {}).values()),
                sum(transfers.get(name_of_pod, {}).values()),
            )
        return signals
