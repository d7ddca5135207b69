"""Reaching the serving gateway: by its URL, or its Service through the API server's proxy.

Where it sits: verification (activities/verification.py) sends its requests through a `Gateway`, and
so does the demo when it shows the same requests to a person (cli/commands/demo.py).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from k8s.client import KubeClient
from spec.rollout import RolloutSpec

# While the gateway answers 502/503/504 (no healthy upstream yet), ask again this many times.
GATEWAY_RETRIES = 4


class Gateway:
    """The gateway as verification reaches it: a URL, or the Service through the API proxy."""

    def __init__(self, spec: RolloutSpec, client: KubeClient) -> None:
        self.spec = spec
        self.client = client
        self.access = spec.verification.gateway
        self.timeout = spec.verification.request_timeout.total_seconds()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """One request, retried a few times while the gateway answers 502/503/504 (no healthy
        upstream yet); the last answer otherwise."""
        status, data = 0, b""
        for attempt in range(GATEWAY_RETRIES):
            status, data = self._once(method, path, body)
            if status not in (502, 503, 504):
                break
            time.sleep(min(2.0, 0.25 * 2**attempt))
        return status, data

    def _once(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self.access.url:
            url = self.access.url.rstrip("/") + path
            try:
                response = httpx.request(method, url, json=body, timeout=self.timeout)
            except httpx.HTTPError as error:
                return 0, str(error).encode()
            return response.status_code, response.content
        return self.client.service_proxy(
            self.spec.target.namespace,
            self.spec.gateway_service,
            self.access.port,
            path,
            method,
            body,
            self.timeout,
        )
