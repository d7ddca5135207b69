"""Verification through the gateway: the model listed, a completion answered, both roles served.

Where it sits: phase 8 (verify) of a rollout, and again for the old version after a rollback,
once activities/serving.py saw vLLM serve on every pod. It sends one completion through the
gateway and checks, from both roles' vLLM counters read before and after it (each pod's
/metrics through the API server's pod proxy), that prefill and decode both served it. It
concludes only from a complete reading: a counter it cannot read retries the verification, and
should that last to the end of the budget, the reason names what refused the read.
"""

from __future__ import annotations

import asyncio
import json
import time

from temporalio import activity

from activities.failures import failure, retryable, target_client
from activities.heartbeat import HEARTBEAT_SECONDS, heartbeat_step
from k8s.client import KubeClient, KubeError
from k8s.gateway import Gateway
from manifests.labels import role_labels
from manifests.lws import vllm_port
from spec.activity_io import (
    CheckResult,
    FailureEvidence,
    RoleTraffic,
    VerificationResult,
    VerifyInput,
)
from spec.reasons import FailureReason
from spec.rollout import ROLES, RoleName, RolloutSpec
from vllmsignals.metrics import (
    GENERATION_TOKENS,
    PROMPT_TOKENS,
    REQUEST_SUCCESS,
    counter_sums,
    delta,
)

RESPONSE_EXCERPT = 2000
# A pod's /metrics read is tried this often (this many seconds apart, growing) before the
# verification is retried as a whole.
METRICS_ATTEMPTS = 4
METRICS_RETRY_SECONDS = 0.5
# The verification could not read every counter it needs: retried, never a failure reason.
VERIFICATION_INCOMPLETE = "VerificationIncomplete"


def _role_metrics(
    client: KubeClient, spec: RolloutSpec
) -> dict[RoleName, tuple[list[str], dict[str, float]]]:
    """Each role's pods and their vLLM counters summed (read through each pod's proxy)."""
    found: dict[RoleName, tuple[list[str], dict[str, float]]] = {}
    for role in ROLES:
        selector = ",".join(f"{k}={v}" for k, v in role_labels(spec, role).items())
        pods, _ = client.list_objects("v1", "Pod", spec.target.namespace, selector)
        names = sorted(
            str(p["metadata"]["name"])
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") == "Running"
        )
        totals: dict[str, float] = {}
        for name in names:
            text = _pod_metrics(client, spec.target.namespace, name, vllm_port(spec, role))
            for key, value in counter_sums(text).items():
                totals[key] = totals.get(key, 0.0) + value
        found[role] = (names, totals)
    return found


class MetricsUnreadable(Exception):
    """A pod's /metrics could not be read: totals without it would prove nothing. `reason` is
    what to report should it stay unreadable to the end of the verification's budget."""

    def __init__(self, message: str, reason: FailureReason) -> None:
        super().__init__(message)
        self.reason = reason


def _pod_metrics(client: KubeClient, namespace: str, pod: str, port: int) -> str:
    """One pod's /metrics text, the read retried a few times; `MetricsUnreadable` when it
    still fails (a skipped pod would make "decode did not serve" look true)."""
    detail = ""
    # The API server failing (5xx, unreachable) or refusing to proxy to the pod (4xx: kubelet
    # unreachable, broken kubelet TLS, a policy), as the model-load wait names them too.
    reason = FailureReason.CLUSTER_UNREACHABLE
    for attempt in range(METRICS_ATTEMPTS):
        if attempt:
            time.sleep(METRICS_RETRY_SECONDS * attempt)
        try:
            status, body = client.pod_proxy(namespace, pod, port, "/metrics")
        except KubeError as error:
            detail, reason = error.message, FailureReason.CLUSTER_UNREACHABLE
            continue
        if status == 200:
            return body.decode(errors="replace")
        detail = f"HTTP {status}: {_excerpt(body)[:200]}"
        reason = (
            FailureReason.POD_PROXY_REFUSED if 400 <= status < 500
            else FailureReason.CLUSTER_UNREACHABLE
        )
    raise MetricsUnreadable(f"cannot read /metrics of pod {pod}: {detail}", reason)


def _excerpt(data: bytes) -> str:
    return data[:RESPONSE_EXCERPT].decode("utf-8", errors="replace")


def verify_sync(spec: RolloutSpec, client: KubeClient) -> VerificationResult:
    verification = spec.verification
    expect = verification.expect
    model = spec.model_service.model_name
    gateway = Gateway(spec, client)
    checks: list[CheckResult] = []
    status, data = gateway.call("GET", "/v1/models")
    models: list[str] = []
    try:
        models = [str(m.get("id")) for m in json.loads(data).get("data") or []]
    except (ValueError, AttributeError):
        models = []
    listed = status == 200 and model in models
    if expect.model_listed:
        checks.append(
            CheckResult(
                name="models",
                passed=listed,
                detail=f"GET /v1/models: HTTP {status}, models {models}"
                + ("" if listed else f"; {model} is not listed"),
                response=None if listed else _excerpt(data),
            )
        )
    before = _role_metrics(client, spec) if expect.disaggregation else {}
    request = {"model": model, "prompt": verification.prompt, "max_tokens": verification.max_tokens}
    status, data = gateway.call("POST", "/v1/completions", request)
    text, tokens = "", 0
    try:
        document = json.loads(data)
        text = str(((document.get("choices") or [{}])[0]).get("text") or "")
        tokens = int((document.get("usage") or {}).get("completion_tokens") or 0)
    except (ValueError, AttributeError, TypeError, IndexError):
        document = None
    completed = status == 200 and tokens >= expect.min_completion_tokens and document is not None
    checks.append(
        CheckResult(
            name="completion",
            passed=completed,
            detail=f"POST /v1/completions: HTTP {status}, {tokens} completion tokens "
            f"(at least {expect.min_completion_tokens} expected)",
            response=None if completed else _excerpt(data),
        )
    )
    traffic: list[RoleTraffic] = []
    if expect.disaggregation:
        after = _role_metrics(client, spec)
        for role in ROLES:
            moved = delta(before[role][1], after[role][1])
            traffic.append(
                RoleTraffic(
                    role=role,
                    pods=after[role][0],
                    prompt_tokens=moved.get(PROMPT_TOKENS, 0.0),
                    generation_tokens=moved.get(GENERATION_TOKENS, 0.0),
                    requests=moved.get(REQUEST_SUCCESS, 0.0),
                )
            )
        by_role = {t.role: t for t in traffic}
        prefill_served = by_role["prefill"].prompt_tokens > 0 or by_role["prefill"].requests > 0
        decode_served = by_role["decode"].generation_tokens > 0
        checks.append(
            CheckResult(
                name="disaggregation",
                passed=prefill_served and decode_served,
                detail=(
                    f"prefill pods {by_role['prefill'].pods}: +{by_role['prefill'].prompt_tokens:g}"
                    f" prompt tokens, +{by_role['prefill'].requests:g} requests; decode pods "
                    f"{by_role['decode'].pods}: +{by_role['decode'].generation_tokens:g} "
                    "generation tokens"
                    + ("" if prefill_served else "; prefill did not serve the request")
                    + ("" if decode_served else "; decode did not serve the request")
                ),
            )
        )
    return VerificationResult(
        checks=checks,
        models=models,
        completion_text=text,
        completion_tokens=tokens,
        traffic=traffic,
    )


@activity.defn
async def verify_gateway(input: VerifyInput) -> VerificationResult:
    """GET /v1/models, POST /v1/completions through the gateway, and check that prefill and
    decode both served the request; a failed check fails with VerificationFailed and says which
    check and what came back."""
    async with target_client(input.spec.target) as client:
        task = asyncio.ensure_future(asyncio.to_thread(verify_sync, input.spec, client))
        while not task.done():
            await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
            heartbeat_step("verifying through the gateway")
        try:
            result = task.result()
        except MetricsUnreadable as error:
            # Only a complete reading may conclude "did not serve": verify again from the start.
            raise retryable(
                VERIFICATION_INCOMPLETE, f"verification incomplete, retried: {error}", error.reason
            ) from None
    failed = [c for c in result.checks if not c.passed]
    if failed:
        message = "verification failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise failure(
            FailureReason.VERIFICATION_FAILED,
            message,
            FailureEvidence(
                reason=FailureReason.VERIFICATION_FAILED.value,
                message=message,
                data={"result": result.model_dump(mode="json")},
            ),
        )
    return result
