"""Benchmark of clustersim's CPU cost per rollout: N concurrent installs on one simulated cluster.

Runs `python -m clustersim up` (API server + agent, one process) as a subprocess with a profile
of 8 roomy nodes, then N concurrent "installs", each in its own namespace and shaped like the
demo's model service: a ConfigMap, a Service, a one-replica Deployment (an EPP-like server) and a
LeaderWorkerSet of one group of size 2 whose pods run `vllm serve` with a startup/readiness
probe on /health. Each install is applied through the API server and watches its namespace's
pods until they are Ready, as a rollout waits. The clustersim process's CPU time (utime + stime
from /proc/PID/stat) is read before the installs start and once every install is Ready.

Much of the cost is periodic (probes every 0.1 s of wall time per container at this time scale),
so a busy machine that stretches the wall time also raises the CPU figures: compare runs made
at the same time: `--baseline-src DIR` interleaves runs of that version with the current one.

    .venv/bin/python bench/clustersim_rollouts.py [--installs 20 50] [--repeats 3]
        [--time-scale 0.02] [--src DIR] [--baseline-src DIR] [--out bench/results/x.json]

`--src DIR` runs the clustersim package found in DIR (e.g. a `git worktree` of an older commit's
`clustersim/src`) instead of the installed one, to compare before and after. Prints one JSON
document (also written to --out) and a table: per N, CPU-seconds of the clustersim process
(min/median/max over the repeats), the same per install, and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
LWS_CRD = "crds/lws-v0.7.0/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROFILE = {
    "name": "bench-8node",
    "nodes": [{"count": 8, "name": "bench-node-{index}",
               "capacity": {"cpu": "1000", "memory": "8Ti", "ephemeral-storage": "10Ti",
                            "pods": "110"}}],
    "durations": {"model_load": 300, "image_pull_default": 20},
}


def reference_dir() -> Path:
    configured = os.environ.get("LLMD_REFERENCE_DIR")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "reference"
    if not (candidate / "NOTES.md").is_file():
        raise SystemExit(f"reference data not found at {candidate} (set LLMD_REFERENCE_DIR)")
    return candidate


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def install_objects(namespace: str) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) of one install, in apply order."""
    labels = {"app.kubernetes.io/instance": namespace}
    vllm = {
        "name": "vllm", "image": "ghcr.io/llm-d/llm-d:v0.2.0",
        "command": ["vllm", "serve", "Qwen/Qwen3-0.6B", "--port", "8000"],
        "ports": [{"containerPort": 8000, "name": "http"}],
        "envFrom": [{"configMapRef": {"name": "model-settings"}}],
        "startupProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 10,
                         "failureThreshold": 120},
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 5},
    }
    core = f"/api/v1/namespaces/{namespace}"
    return [
        (f"{core}/configmaps", {"metadata": {"name": "model-settings"},
                                "data": {"VLLM_LOGGING_LEVEL": "INFO"}}),
        (f"{core}/services", {"metadata": {"name": "epp", "labels": labels},
                              "spec": {"selector": {"app": "epp"},
                                       "ports": [{"name": "grpc", "port": 9002}]}}),
        (f"/apis/apps/v1/namespaces/{namespace}/deployments", {
            "metadata": {"name": "epp", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "epp"}},
                     "template": {"metadata": {"labels": {"app": "epp", **labels}},
                                  "spec": {"containers": [{
                                      "name": "epp",
                                      "image": "ghcr.io/llm-d/llm-d-inference-scheduler:v0.2.0",
                                      "args": ["--grpcPort", "9002", "--grpcHealthPort", "9003"],
                                      "ports": [{"containerPort": 9002}]}]}}}}),
        (f"/apis/leaderworkerset.x-k8s.io/v1/namespaces/{namespace}/leaderworkersets", {
            "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": "decode", "labels": labels},
            "spec": {"replicas": 1, "leaderWorkerTemplate": {
                "size": 2, "workerTemplate": {"metadata": {"labels": labels},
                                              "spec": {"containers": [vllm]}}}}}),
    ]


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, self.url + path, data=data,
                                        headers=self.headers) as response:
            return response.status, await response.json(content_type=None)


async def install(api: Api, namespace: str, pods_expected: int) -> float:
    """Apply one install and wait until its pods are Ready; returns its wall time."""
    began = time.monotonic()
    status, body = await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    assert status == 201, body
    for path, obj in install_objects(namespace):
        for _ in range(50):  # the namespace's default ServiceAccount may lag a moment
            status, body = await api.call("POST", path, obj)
            if status != 403 and status != 404:
                break
            await asyncio.sleep(0.1)
        assert status == 201, (path, body)
    # wait as a rollout does: watch the namespace's pods until enough of them are Ready
    ready: set[str] = set()
    path = f"/api/v1/namespaces/{namespace}/pods?watch=true&timeoutSeconds=600"
    async with api.session.get(api.url + path, headers=api.headers) as stream:
        async for line in stream.content:
            event = json.loads(line)
            pod = event["object"]
            name = pod["metadata"]["name"]
            if event["type"] != "DELETED" and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (pod.get("status") or {}).get("conditions") or []):
                ready.add(name)
            else:
                ready.discard(name)
            if len(ready) >= pods_expected:
                return time.monotonic() - began
    raise RuntimeError(f"{namespace}: the pod watch ended before {pods_expected} were Ready")


def start_cluster(workdir: Path, time_scale: float, src: Path | None,
                  profile_out: Path | None = None) -> tuple[subprocess.Popen[bytes],
                                                            dict[str, Any]]:
    profile = workdir / "profile.yaml"
    profile.write_text(yaml.safe_dump(PROFILE))
    info = workdir / "info.json"
    environment = dict(os.environ)
    if src is not None:
        environment["PYTHONPATH"] = str(src)
    profiler = ["-m", "cProfile", "-o", str(profile_out)] if profile_out else []
    process = subprocess.Popen(
        [sys.executable, *profiler, "-m", "clustersim", "up", "--profile", str(profile),
         "--port", "0",
         "--time-scale", str(time_scale), "--data-dir", str(workdir / "data"),
         "--kubeconfig-out", str(workdir / "kubeconfig"), "--info-out", str(info)],
        cwd=workdir, env=environment, stdout=(workdir / "up.log").open("wb"),
        stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not info.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"clustersim up did not start: {(workdir / 'up.log').read_text()}")
        time.sleep(0.1)
    return process, json.loads(info.read_text())


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def one_run(installs: int, time_scale: float, src: Path | None,
                  profile_out: Path | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="clustersim-bench-") as directory:
        workdir = Path(directory)
        process, info = start_cluster(workdir, time_scale, src, profile_out)
        try:
            config = yaml.safe_load(Path(info["kubeconfig"]).read_text())
            token = config["users"][0]["user"]["token"]
            context = ssl.create_default_context(cafile=str(workdir / "data" / "pki" / "ca.crt"))
            connector = aiohttp.TCPConnector(ssl=context, limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                api = Api(session, info["api_url"], token)
                crd = yaml.safe_load((reference_dir() / LWS_CRD).read_text())
                status, body = await api.call(
                    "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
                assert status == 201, body
                await asyncio.sleep(2.0)  # the agent's LWS informer starts once the CRD is in
                cpu_before = cpu_seconds(process.pid)
                began = time.monotonic()
                walls = await asyncio.gather(*(install(api, f"bench-{i}", 3)
                                               for i in range(installs)))
                wall = time.monotonic() - began
                cpu = cpu_seconds(process.pid) - cpu_before
        finally:
            stop(process)
    return {"cpu_seconds": cpu, "wall_seconds": wall, "slowest_install_seconds": max(walls)}


def summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


def _summarize(installs: int, runs: list[dict[str, float]]) -> dict[str, Any]:
    cpu = [r["cpu_seconds"] for r in runs]
    return {
        "cpu_seconds": summary(cpu),
        "cpu_seconds_per_install": summary([c / installs for c in cpu]),
        "wall_seconds": summary([r["wall_seconds"] for r in runs]),
        "raw": runs,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--installs", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.02)
    parser.add_argument("--src", type=Path, default=None,
                        help="directory holding the clustersim package to run (default: installed)")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="another clustersim package directory, run as 'before', each of its "
                             "runs next to one of --src's ('after')")
    parser.add_argument("--label", default="current")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--profile-out", type=Path, default=None,
                        help="run clustersim under cProfile and write its stats here (one run; "
                             "the CPU figures then include the profiler's cost)")
    args = parser.parse_args()
    if args.profile_out is not None:
        print(json.dumps(await one_run(args.installs[0], args.time_scale, args.src,
                                       args.profile_out)))
        return
    versions = {args.label: args.src}
    if args.baseline_src is not None:
        versions = {"before": args.baseline_src, "after": args.src}
    results: dict[str, Any] = {"benchmark": "clustersim_rollouts", "time_scale": args.time_scale,
                               "repeats": args.repeats, "pods_per_install": 3, "versions": {}}
    for installs in args.installs:
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in versions}
        for _ in range(args.repeats):
            for label, src in versions.items():
                runs[label].append(await one_run(installs, args.time_scale, src))
        for label in versions:
            results["versions"].setdefault(label, {})[str(installs)] = _summarize(
                installs, runs[label])
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(f"\n{'version':<10} {'N':>4} {'CPU s min/med/max':>22} {'CPU s/install (med)':>20} "
          f"{'wall s (med)':>13}")
    for label, by_installs in results["versions"].items():
        for installs, run in by_installs.items():
            cpu = run["cpu_seconds"]
            print(f"{label:<10} {installs:>4} "
                  f"{cpu['min']:>6.1f} / {cpu['median']:>5.1f} / {cpu['max']:>5.1f} "
                  f"{run['cpu_seconds_per_install']['median']:>20.2f} "
                  f"{run['wall_seconds']['median']:>13.1f}")


if __name__ == "__main__":
    asyncio.run(main())
