"""Benchmark of the model-load wait on clustersim: its API requests, and how fast faults fail it.

Runs `python -m clustersim up --profile h200-2node --time-scale 0.01` as a subprocess through
embedded.clustersim_process (stopped by PID at the end), deploys the demo model service
(examples/demo.yaml, no startup probes: vLLM itself is asked) and measures:

- the API requests one full model-load wait makes per role (counted in our client, by kind):
  the goal is a few list+watch pairs, one log stream and a probe or two per pod, not a poll per
  second;
- for each fault kind clustersim injects, when an independent watch first sees the symptom
  (onset), when the wait fails, with which reason, and whether it failed within
  2 x onset + 5 simulated seconds of the wait's start; the crash-loop row gives the delay from a
  pod turning CrashLoopBackOff (or its container exiting) to the wait failing (goal: under 1 s).

    .venv/bin/python bench/activities_model_load.py

Prints one JSON document and a table.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activities import kube, waits  # noqa: E402
from activities.serving import ModelLoadWait  # noqa: E402
from embedded.clustersim_process import ClusterSimProcess  # noqa: E402
from k8s import Collection, Informer, KubeClient  # noqa: E402
from manifests import epp_name  # noqa: E402
from spec import RolloutSpec, load_spec  # noqa: E402
from spec.activity_io import (  # noqa: E402
    ApplyCrdsInput,
    ApplyModelServiceInput,
    DeleteObjectsInput,
    EnsureNamespaceInput,
    HfTokenSecretInput,
    ModelLoadInput,
    ObjectRef,
    WaitForObjectInput,
)
from spec.rollout import CrdBundle  # noqa: E402

TIME_SCALE = 0.01
BUDGET = timedelta(seconds=60)
SLACK_SIMULATED = 5.0
NAMESPACE = "bench-load"

Pod = Mapping[str, Any]


def _statuses(pod: Pod) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def waiting(*reasons: str) -> Callable[[Pod], bool]:
    return lambda pod: any(
        ((s.get("state") or {}).get("waiting") or {}).get("reason") in reasons
        for s in _statuses(pod)
    )


def exited(reason: str | None = None) -> Callable[[Pod], bool]:
    def seen(pod: Pod) -> bool:
        for status in _statuses(pod):
            for state in (status.get("state") or {}, status.get("lastState") or {}):
                ended = state.get("terminated") or {}
                if ended.get("exitCode") and (reason is None or ended.get("reason") == reason):
                    return True
        return False

    return seen


def unschedulable(pod: Pod) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def running(pod: Pod) -> bool:
    return any(
        "running" in (s.get("state") or {})
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: list[str]
    expect: str
    symptom: str
    pod_symptom: Callable[[Pod], bool] | None = None
    node_symptom: bool = False
    with_secret: bool = True
    after_apply: bool = False
    # A hung load shows nothing: its onset is when the load stops (28% of a 4.8 s load).
    onset_after_running: float | None = None
    # Which wait runs: the decode model load, or the EPP Deployment's (whose container the
    # kubelet restarts in place, so CrashLoopBackOff shows; LWS recreates its groups instead).
    wait: str = "model-load"


SCENARIOS = [
    Scenario(
        "image pull",
        [
            "image-pull",
            "--namespace",
            NAMESPACE,
            "--image",
            "ghcr.io/llm-d/llm-d-dev:*",
            "--count",
            "50",
        ],
        "ImagePull",
        "ErrImagePull",
        waiting("ErrImagePull", "ImagePullBackOff"),
    ),
    Scenario(
        "crash: CUDA OOM",
        [
            "crash",
            "--namespace",
            NAMESPACE,
            "--error",
            "cuda_oom",
            "--after",
            "60",
            "--count",
            "50",
        ],
        "CudaOutOfMemory",
        "container exit",
        exited(),
    ),
    Scenario(
        "crash: NIXL",
        ["crash", "--namespace", NAMESPACE, "--error", "nixl", "--after", "60", "--count", "50"],
        "NixlTransportError",
        "container exit",
        exited(),
    ),
    Scenario(
        "crash: NVSHMEM",
        ["crash", "--namespace", NAMESPACE, "--error", "nvshmem", "--after", "60", "--count", "50"],
        "NvshmemInitFailure",
        "container exit",
        exited(),
    ),
    Scenario(
        "crash: HF gated",
        [
            "crash",
            "--namespace",
            NAMESPACE,
            "--error",
            "hf_gated",
            "--after",
            "60",
            "--count",
            "50",
        ],
        "HuggingFaceUnauthorized",
        "container exit",
        exited(),
    ),
    # One pod crashing without a known pattern: the wait fails at its CrashLoopBackOff or at
    # its second exit (the LWS recreates the group after the first), whichever shows first.
    Scenario(
        "crash loop (no pattern)",
        [
            "crash",
            "--namespace",
            NAMESPACE,
            "--pod",
            "decode-0$",
            "--error",
            "generic",
            "--after",
            "60",
            "--count",
            "50",
        ],
        "CrashLoop",
        "CrashLoopBackOff",
        waiting("CrashLoopBackOff"),
    ),
    Scenario(
        "crash loop (EPP Deployment)",
        ["crash", "--namespace", NAMESPACE, "--container", "epp", "--after", "0", "--count", "50"],
        "CrashLoop",
        "CrashLoopBackOff",
        waiting("CrashLoopBackOff"),
        wait="epp",
    ),
    Scenario(
        "OOM kill",
        ["oom", "--namespace", NAMESPACE, "--after", "60", "--count", "50"],
        "OOMKilled",
        "OOMKilled",
        exited("OOMKilled"),
    ),
    Scenario(
        "hung load",
        ["load-hang", "--namespace", NAMESPACE, "--count", "50"],
        "ModelLoadStalled",
        "progress stops",
        onset_after_running=0.28 * 480 * TIME_SCALE,
    ),
    Scenario(
        "node lost",
        ["node-not-ready", "--duration", "100000"],
        "NodeLost",
        "node NotReady",
        node_symptom=True,
        after_apply=True,
    ),
    Scenario(
        "no GPUs",
        ["capacity", "--resource", "nvidia.com/gpu=2", "--duration", "100000"],
        "Unschedulable",
        "Unschedulable",
        unschedulable,
    ),
    Scenario(
        "missing Secret",
        [],
        "CreateContainerConfigError",
        "CreateContainerConfigError",
        waiting("CreateContainerConfigError"),
        with_secret=False,
    ),
]


def demo(kubeconfig: Path) -> RolloutSpec:
    spec = load_spec(REPO / "examples" / "demo.yaml")
    target = spec.target.model_copy(update={"kubeconfig": str(kubeconfig), "namespace": NAMESPACE})
    service = spec.model_service.model_copy(update={"startup_probe": False})
    budgets = spec.budgets.model_copy(update={"model_load": BUDGET})
    return spec.model_copy(update={"target": target, "model_service": service, "budgets": budgets})


async def deploy(env: ActivityEnvironment, spec: RolloutSpec, with_secret: bool) -> None:
    if with_secret:
        await env.run(
            kube.ensure_hf_token_secret,
            HfTokenSecretInput(target=spec.target, hf_token=spec.model_service.hf_token),
        )
    await env.run(kube.apply_model_service, ApplyModelServiceInput(spec=spec))


async def clean(env: ActivityEnvironment, spec: RolloutSpec) -> None:
    await env.run(
        kube.delete_objects,
        DeleteObjectsInput(target=spec.target, rollout=spec.metadata.name, timeout=BUDGET),
    )
    await env.run(
        kube.delete_objects,
        DeleteObjectsInput(
            target=spec.target,
            refs=[
                ObjectRef(
                    api_version="v1", kind="Secret", name="llm-d-hf-token", namespace=NAMESPACE
                )
            ],
            timeout=BUDGET,
        ),
    )


async def load_wait(spec: RolloutSpec, role: str) -> tuple[Any, KubeClient, float]:
    client = KubeClient.for_target(spec.target)
    wait = ModelLoadWait(ModelLoadInput(spec=spec, role=role), client)
    started = time.monotonic()
    try:
        result = await ActivityEnvironment().run(wait.run)
    finally:
        wait.stop()
        client.close()
    return result, client, time.monotonic() - started


async def measure_requests(spec: RolloutSpec) -> dict[str, Any]:
    env = ActivityEnvironment()
    await deploy(env, spec, True)
    rows = {}
    for role in ("decode", "prefill"):
        result, client, elapsed = await load_wait(spec, role)
        rows[role] = {
            "api_requests": client.requests,
            "by_kind": dict(sorted(client.request_kinds.items())),
            "pods": len(result.pods),
            "seconds": round(elapsed, 2),
            "requests_per_second": round(client.requests / elapsed, 2),
        }
    await clean(env, spec)
    return rows


async def measure_fault(
    cluster: ClusterSimProcess, spec: RolloutSpec, scenario: Scenario
) -> dict[str, Any]:
    env = ActivityEnvironment()
    client = KubeClient.for_target(spec.target)
    seen: dict[str, float] = {}
    start = time.monotonic()

    def observe() -> None:
        now = time.monotonic()
        for pod in pods.objects():
            if running(pod):
                seen.setdefault("running", now)
            if scenario.pod_symptom is not None and scenario.pod_symptom(pod):
                seen.setdefault("symptom", now)
            if exited()(pod):
                seen.setdefault("exit", now)
            if waiting("CrashLoopBackOff")(pod):
                seen.setdefault("crashloop", now)
        if scenario.node_symptom:
            for node in nodes.objects():
                ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
                if ready and ready[0]["status"] != "True":
                    seen.setdefault("symptom", now)

    selector = (
        f"llm-d.ai/epp={epp_name(spec)}"
        if scenario.wait == "epp"
        else f"leaderworkerset.sigs.k8s.io/name={spec.model_service.lws_name('decode')}"
    )
    pods = Informer(client, Collection("v1", "Pod", NAMESPACE, selector), lambda: observe())
    nodes = Informer(client, Collection("v1", "Node"), lambda: observe())
    pods.start()
    nodes.start()
    try:
        if scenario.fault and not scenario.after_apply:
            cluster.fault(*scenario.fault)
        await deploy(env, spec, scenario.with_secret)
        start = time.monotonic()
        if scenario.after_apply:
            await asyncio.sleep(1.0)
            start = time.monotonic()
            cluster.fault(*scenario.fault)
        reason, message = "none", ""
        try:
            if scenario.wait == "epp":
                await env.run(
                    waits.wait_for_deployment,
                    WaitForObjectInput(target=spec.target, name=epp_name(spec), timeout=BUDGET),
                )
            else:
                await load_wait(spec, "decode")
        except ApplicationError as error:
            reason, message = str(error.type), str(error)
        failed = time.monotonic()
    finally:
        pods.stop()
        nodes.stop()
        client.close()
        cluster.fault("clear")
        await clean(env, spec)
    if scenario.onset_after_running is not None and "running" in seen:
        seen["symptom"] = seen["running"] + scenario.onset_after_running
    onset = seen.get("symptom")
    row: dict[str, Any] = {
        "fault": scenario.name,
        "expected": scenario.expect,
        "reason": reason,
        "correct": reason == scenario.expect,
        "symptom": scenario.symptom,
        "onset_seconds": round(onset - start, 3) if onset else None,
        "failed_seconds": round(failed - start, 3),
        "detection_delay_seconds": round(failed - onset, 3) if onset else None,
        "crashloop_to_failure_seconds": (
            round(failed - seen["crashloop"], 3) if "crashloop" in seen else None
        ),
        "exit_to_failure_seconds": round(failed - seen["exit"], 3) if "exit" in seen else None,
        "message": message[:160],
    }
    if onset:
        bound = 2 * (onset - start) + SLACK_SIMULATED * TIME_SCALE
        row["bound_seconds"] = round(bound, 3)
        row["within_bound"] = failed - start < bound
    return row


def table(result: dict[str, Any]) -> str:
    lines = ["Model-load wait: API requests per full wait (demo stack, time scale 0.01)", ""]
    lines.append(f"{'ROLE':<8} {'REQUESTS':>8} {'SECONDS':>8} {'REQ/S':>6}  BY KIND")
    for role, row in result["requests"].items():
        kinds = ", ".join(f"{k}={v}" for k, v in row["by_kind"].items())
        lines.append(
            f"{role:<8} {row['api_requests']:>8} {row['seconds']:>8} "
            f"{row['requests_per_second']:>6}  {kinds}"
        )
    lines += [
        "",
        "Faults: reason, onset (independent watch) and failure, real seconds from apply",
        "",
    ]
    lines.append(
        f"{'FAULT':<28} {'REASON':<27} {'OK':<3} {'ONSET':>6} {'FAILED':>7} {'DELAY':>6} "
        f"{'BOUND':>6} {'IN':<3} {'CLB->FAIL':>9} {'EXIT->FAIL':>10}"
    )
    for row in result["faults"]:

        def show(value: Any) -> str:
            return "-" if value is None else f"{value}"

        lines.append(
            f"{row['fault']:<28} {row['reason']:<27} {'yes' if row['correct'] else 'NO':<3} "
            f"{show(row['onset_seconds']):>6} {row['failed_seconds']:>7} "
            f"{show(row['detection_delay_seconds']):>6} {show(row.get('bound_seconds')):>6} "
            f"{('yes' if row.get('within_bound') else 'NO') if 'within_bound' in row else '-':<3} "
            f"{show(row['crashloop_to_failure_seconds']):>9} "
            f"{show(row['exit_to_failure_seconds']):>10}"
        )
    return "\n".join(lines)


async def main() -> None:
    os.environ.setdefault("HF_TOKEN", "hf_bench_token")
    with tempfile.TemporaryDirectory(prefix="bench-model-load-") as workdir:
        async with ClusterSimProcess(Path(workdir), time_scale=TIME_SCALE) as cluster:
            spec = demo(cluster.kubeconfig_path)
            env = ActivityEnvironment()
            await env.run(kube.ensure_namespace, EnsureNamespaceInput(target=spec.target))
            for bundle in ("gateway-api", "inference-extension", "leaderworkerset"):
                await env.run(
                    kube.apply_crds,
                    ApplyCrdsInput(
                        target=spec.target, bundle=CrdBundle(version="v1.0.0"), bundle_name=bundle
                    ),
                )
            result: dict[str, Any] = {
                "time_scale": TIME_SCALE,
                "requests": await measure_requests(spec),
                "faults": [await measure_fault(cluster, spec, s) for s in SCENARIOS],
            }
    print(json.dumps(result, indent=2))
    print()
    print(table(result))


if __name__ == "__main__":
    asyncio.run(main())
