"""The worker's Prometheus endpoint: the Temporal SDK runtime with its Prometheus exporter.

Where it sits: worker.py builds one `Runtime` here when `--metrics-port` is set and passes it to
`embedded.connect.connect`, so the client and the worker record into it. The exporter serves
`/metrics` on its own HTTP listener: the SDK's metrics (task latencies, pollers, activity and
workflow outcomes) and whatever workflow and activity code records through the SDK's metric
meters (our rollout metrics, workflows/metrics.py), in one scrape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig


def prometheus_runtime(
    host: str, port: int, histogram_buckets: Mapping[str, Sequence[float]] | None = None
) -> Runtime:
    """A runtime exporting Prometheus metrics on http://host:port/metrics.

    Counters end in `_total` and SDK durations are seconds, as Prometheus conventions ask;
    `histogram_buckets` overrides the buckets of the named histograms.
    """
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind,
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides=histogram_buckets,
            )
        )
    )
