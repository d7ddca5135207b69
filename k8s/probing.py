"""Asking vLLM on a pod whether it serves, through the API server's pod proxy.

Where it sits: the model-load wait (activities/serving.py) probes each pod with `probe_vllm`
from a thread, in the background. The answer tells three cases apart: vLLM answered (serving
the model or not yet), the request failed on the way (retried on the next probe), or the API
server itself refused to proxy (a 400/403 carrying a Kubernetes Status: kubelet unreachable,
broken kubelet TLS, a policy). A refusal that persists is a failure of its own, with the API
server's words, instead of "not serving yet" until the budget runs out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from k8s.client import KubeClient, KubeError

# The API server's own refusals of a proxy request; vLLM answers neither on /health.
REFUSAL_STATUSES = frozenset({400, 403})


@dataclass(frozen=True)
class ProbeAnswer:
    """One probe: the models vLLM lists (None: not serving yet), in words, and the API
    server's message when it refused to proxy."""

    models: list[str] | None
    detail: str
    refused: str | None = None


def proxy_refusal(status: int, body: bytes) -> str | None:
    """The API server's message when a proxied answer is its own refusal, else None."""
    if status not in REFUSAL_STATUSES:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("kind") != "Status":
        return None
    return f"HTTP {status} {document.get('reason') or ''}: {document.get('message') or ''}".strip()


def probe_vllm(client: KubeClient, namespace: str, pod: str, port: int, model: str) -> ProbeAnswer:
    """vLLM's /health, then /v1/models, on one pod (blocking)."""
    try:
        status, body = client.pod_proxy(namespace, pod, port, "/health")
        refused = proxy_refusal(status, body)
        if refused or status != 200:
            return ProbeAnswer(None, refused or f"/health answered {status}", refused)
        status, body = client.pod_proxy(namespace, pod, port, "/v1/models")
    except KubeError as error:
        # Refused by RBAC (k8s/client.py raises it): a missing rule, for the caller to name.
        if error.status == 403:
            raise
        return ProbeAnswer(None, f"probe failed: {error.message}")
    refused = proxy_refusal(status, body)
    if refused or status != 200:
        return ProbeAnswer(None, refused or f"/v1/models answered {status}", refused)
    try:
        models = [str(m.get("id")) for m in json.loads(body).get("data") or []]
    except (ValueError, AttributeError):
        return ProbeAnswer(None, "/v1/models did not answer JSON")
    if model not in models:
        return ProbeAnswer(models, f"serves {models}, not {model}")
    return ProbeAnswer(models, "serving")
