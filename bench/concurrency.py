"""Benchmark: N concurrent targets on one cluster and one worker, cold and warm.

    .venv/bin/python bench/concurrency.py [--n 1 5 20 50] [--reps 3] [--profiles tight room] \
        [--json FILE]

For each profile (`tight`: exactly the GPUs the N targets ask; `room`: half as much again), each
N and each repetition: a fresh clustersim, N targets (each its own namespace; one 8-GPU prefill
pod and one 8-GPU decode pod, so any placement of whole-node pods fits) started together on an
empty cluster (cold), then the same N again (warm: nothing to change). The worker is worker.py
itself, as a process of its own (as in production), against the bench's Temporal dev server: its
figures are its own, not this process's (which starts the rollouts, waits for their results and
watches every pod for the timeline). The repository is compiled to bytecode first, as the worker
image is.

Per batch: successes (and refusals at preflight), wall time, p50/p95 per rollout and their ratio
to N=1, worker peak RSS (this process; the lifetime maximum so far), worker CPU-seconds per
rollout including helm/kubectl children (both from /proc of the worker; the peak is reset before
each batch through /proc/PID/clear_refs), API requests per rollout by client (counted by
clustersim: the official Python client is the worker, Helm is helm), history events per rollout,
clustersim and Temporal server CPU-seconds, the p95 of the dependencies phase (as the journal shows
it: the cluster workflow's own work on the pieces) and of the rollout's wait for its shared-pieces
ask (read from its history, bench/lib/history.py; the table's "ask p95"), the p95 of the namespace
phase (one Namespace read, and warm nothing to change: what any step costs at this N on this
machine, the table's "ns p95"), and the orchestration
overhead per rollout measured directly: its wall time minus the time the cluster spent bringing
its pods up (read from a watch of every pod, bench/lib/timeline.py). And what the machine could
give: its busy CPU-seconds over the batch (every process: worker, helm, clustersim and its
workloads, Temporal, this bench; /proc/stat), their share of wall time x cores, and the CPU
floor, busy CPU-seconds / cores: no batch that needs this much CPU ends sooner on this machine,
however it is orchestrated. Each figure is given as min/median/max over the repetitions.
Goals (reported, not asserted): 0 failures; p95 <= 3x N=1; RSS <= 250 MB; <= 0.4 CPU-s per
rollout; < 100 API requests per warm install; dependencies phase <= 0.5 s p95 at N=50 (read as
the rollout's wait for the ask); overhead of a single install < 1 s. The JSON goes to --json
FILE (else to stdout, where the SDK's core may have written warnings before it), the table to
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from temporalio.client import Client, WorkflowHandle  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from bench.lib.history import shared_pieces_wait_seconds  # noqa: E402
from bench.lib.timeline import PodTimeline  # noqa: E402
from embedded import (  # noqa: E402
    ChildProcess,
    ClusterSimProcess,
    TemporalDevServer,
    wait_until_polled,
)
from rollouts import rollout_result, start_rollout  # noqa: E402
from spec import RolloutSpec, parse_spec  # noqa: E402
from spec.reasons import FailureReason  # noqa: E402
from spec.workflow_io import Outcome, Phase, RolloutResult  # noqa: E402

# Simulated seconds per wall second, as tests/workflows/test_e2e_multi.py's fifty-rollout test:
# at 0.005 the EPP Deployment's 600 s progress deadline is 3 wall seconds, which a simulated
# controller waiting for CPU behind 50 cold rollouts on two cores exceeded.
SCALE = 0.02
TIMEOUT = 900.0
VENV_BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1
SHARED_NAMESPACES = {"lws-system", "istio-system"}
PROFILE = REPO / "clustersim" / "src" / "clustersim" / "agent" / "profiles" / "h200-2node.yaml"


def profile_file(workdir: Path, nodes: int) -> Path:
    profile = yaml.safe_load(PROFILE.read_text())
    profile["name"] = f"h200-{nodes}node"
    profile["nodes"][0]["count"] = nodes
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def target_spec(kubeconfig: Path, name: str) -> RolloutSpec:
    document = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text(encoding="utf-8"))
    document["metadata"]["name"] = name
    document["target"].update({"kubeconfig": str(kubeconfig), "namespace": name})
    document["budgets"]["modelLoad"] = "15m"
    rule = document["infra"]["values"]["gateway"]["destinationRule"]
    rule["host"] = rule["host"].replace(".llm-d-wide-ep.", f".{name}.")
    decode = document["modelService"]["decode"]
    decode.update({"replicas": 1, "groupSize": 1, "dataParallelLocal": 8, "gpusPerPod": 8})
    for env in decode["env"]:
        if env["name"] == "DP_SIZE_LOCAL":
            env["value"] = "8"
    return parse_spec(yaml.safe_dump(document), f"bench {name}", base_dir=REPO / "examples")


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat from its 3rd field on (the command name may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float:
    """utime + stime of a process, from /proc (seconds)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> float:
    """cutime + cstime: the children a process has waited for (the worker's helm and kubectl)."""
    fields = _stat(pid)
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU-seconds every core of the machine has spent busy since boot (/proc/stat: all but
    idle and iowait; guest time is already in user)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> None:
    """Start a new peak (VmHWM) for `pid`: 5 is clear_refs(5)'s "reset the peak RSS"."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    """VmHWM of `pid`: its peak resident set since the last reset, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def admin_state(kubeconfig: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(VENV_BIN / "kubectl"), "get", "--raw", "/clustersim/admin/state",
         "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    state: dict[str, Any] = json.loads(done.stdout)
    return state


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def phase_seconds(result: RolloutResult, phase: Phase) -> float:
    """How long the journal says `phase` took (0 when it did not run)."""
    return next((p.duration_seconds for p in result.phases if p.phase == phase), 0.0)


async def batch(
    client: Client, task_queue: str, kubeconfig: Path, pids: tuple[int, int, int],
    names: list[str], timeline: PodTimeline,
) -> dict[str, Any]:
    """Start every target at once, wait for all; the figures of this batch. `pids` are the
    worker's, clustersim's and the Temporal server's."""
    worker_pid, sim_pid, temporal_pid = pids
    specs = {name: target_spec(kubeconfig, name) for name in names}
    before_requests = admin_state(kubeconfig).get("requestsByAgent", {})
    reset_peak_rss(worker_pid)
    before_cpu, before_children = process_cpu(worker_pid), children_cpu(worker_pid)
    before_sim, before_temporal = process_cpu(sim_pid), process_cpu(temporal_pid)
    before_busy = machine_busy_seconds()
    started = time.time()

    async def one(name: str) -> tuple[RolloutResult, float, float, WorkflowHandle[Any, Any]]:
        began = time.time()
        handle = await start_rollout(client, specs[name], task_queue=task_queue)
        result = await asyncio.wait_for(rollout_result(handle), TIMEOUT)
        return result, began, time.time(), handle

    runs = await asyncio.gather(*(one(name) for name in names))
    wall = time.time() - started
    busy = machine_busy_seconds() - before_busy
    cpu, children = process_cpu(worker_pid), children_cpu(worker_pid)
    temporal_cpu = process_cpu(temporal_pid) - before_temporal
    sim_cpu, peak_rss = process_cpu(sim_pid), peak_rss_mb(worker_pid)
    after_requests = admin_state(kubeconfig).get("requestsByAgent", {})
    histories = [await handle.fetch_history() for _, _, _, handle in runs]
    events = [len(history.events) for history in histories]
    asks = [
        wait for wait in map(shared_pieces_wait_seconds, histories) if wait is not None
    ]
    n = len(names)
    durations = [ended - began for _, began, ended, _ in runs]
    overheads = [
        (ended - began) - timeline.busy({name} | SHARED_NAMESPACES, began, ended)
        for (_, began, ended, _), name in zip(runs, names, strict=True)
    ]
    deps = [phase_seconds(r, Phase.DEPENDENCIES) for r, _, _, _ in runs]
    namespaces = [phase_seconds(r, Phase.NAMESPACE) for r, _, _, _ in runs]
    holds = [
        sum(s.duration_seconds or 0.0 for s in r.steps if s.name == "hold-capacity")
        for r, _, _, _ in runs
    ]
    refused = [
        r for r, _, _, _ in runs
        if r.failure is not None and r.failure.reason == FailureReason.INSUFFICIENT_CAPACITY
        and r.failure.phase == Phase.PREFLIGHT
    ]
    requests = {
        agent: round((after_requests.get(agent, 0) - before_requests.get(agent, 0)) / n, 1)
        for agent in sorted(set(after_requests) | set(before_requests))
    }
    return {
        "n": n,
        "succeeded": sum(1 for r, _, _, _ in runs if r.outcome == Outcome.SUCCEEDED),
        "refused_at_preflight": len(refused),
        "failures": [
            f"{r.target}: {r.failure.reason.value}: {r.failure.message[:160]}"
            for r, _, _, _ in runs if r.failure is not None and r not in refused
        ],
        "wall_seconds": round(wall, 3),
        "p50_seconds": round(statistics.median(durations), 3),
        "p95_seconds": round(percentile(durations, 0.95), 3),
        "overhead_p50_seconds": round(statistics.median(overheads), 3),
        "overhead_p95_seconds": round(percentile(overheads, 0.95), 3),
        "dependencies_p95_seconds": round(percentile(deps, 0.95), 3),
        "shared_pieces_wait_p95_seconds": round(percentile(asks, 0.95), 3) if asks else None,
        "namespace_p95_seconds": round(percentile(namespaces, 0.95), 3),
        "hold_capacity_p95_seconds": round(percentile(holds, 0.95), 3),
        "worker_peak_rss_mb": round(peak_rss, 1),
        "worker_cpu_seconds_per_rollout": round(
            (cpu + children - before_cpu - before_children) / n, 3
        ),
        "children_cpu_seconds_per_rollout": round((children - before_children) / n, 3),
        "clustersim_cpu_seconds": round(sim_cpu - before_sim, 2),
        "temporal_cpu_seconds": round(temporal_cpu, 2),
        "machine_cpu_seconds": round(busy, 2),
        "cpu_utilization": round(busy / (wall * CORES), 2),
        "cpu_floor_seconds": round(busy / CORES, 2),
        "api_requests_per_rollout": requests,
        "history_events_per_rollout": round(statistics.mean(events), 1),
    }


def worker_environment() -> dict[str, str]:
    """The worker's environment: a fake token, and helm and kubectl from the project's .venv."""
    return {
        **os.environ,
        "HF_TOKEN": "hf_bench_token",
        "LLMD_HELM": os.environ.get("LLMD_HELM", str(VENV_BIN / "helm")),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


async def measure(ns: list[int], reps: int, profiles: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {"scale": SCALE, "runs": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        async with TemporalDevServer(root / "temporal.db") as server:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            temporal_pid = server.pid
            assert temporal_pid is not None, "the dev server is running"
            task_queue = f"bench-concurrency-{uuid.uuid4().hex[:8]}"
            # As the worker image does when it is built (Dockerfile): the workflow sandbox
            # imports our modules again for every run, from bytecode when there is some.
            compileall.compile_dir(str(REPO), quiet=1, rx=re.compile(r"/\.(venv|git)/"))
            worker = ChildProcess(
                "the worker",
                [sys.executable, "-m", "worker", "--address", server.address,
                 "--task-queue", task_queue],
                root / "worker.log", env=worker_environment(), cwd=REPO,
            )
            worker.start()
            try:
                await wait_until_polled(
                    client, "default", task_queue, worker, timedelta(seconds=120)
                )
                for profile in profiles:
                    for n in ns:
                        for rep in range(reps):
                            report["runs"] += await one_cluster(
                                client, task_queue, worker, temporal_pid, root, profile, n, rep
                            )
            finally:
                await worker.stop()
    report["summary"] = summarize(report["runs"])
    return report


async def one_cluster(
    client: Client, task_queue: str, worker: ChildProcess, temporal_pid: int, root: Path,
    profile: str, n: int, rep: int,
) -> list[dict[str, Any]]:
    """A fresh clustersim for one repetition: its cold batch, then its warm batch."""
    nodes = 2 * n if profile == "tight" else 3 * n
    workdir = root / f"sim-{profile}-{n}-{rep}"
    workdir.mkdir()
    runs = []
    async with ClusterSimProcess(
        workdir, profile=str(profile_file(workdir, nodes)), time_scale=SCALE,
        startup_timeout=timedelta(seconds=120),
    ) as sim:
        assert sim.pid is not None and worker.pid is not None, "both are running"
        timeline = PodTimeline(sim.kubeconfig_path)
        names = [f"t{rep}-{i}" for i in range(n)]
        try:
            for phase in ("cold", "warm"):
                figures = await batch(
                    client, task_queue, sim.kubeconfig_path, (worker.pid, sim.pid, temporal_pid),
                    names,
                    timeline,
                )
                figures.update(profile=profile, phase=phase, rep=rep)
                runs.append(figures)
                print(json.dumps(figures), file=sys.stderr)
        finally:
            timeline.stop()
    return runs


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


SUMMARIZED = (
    "succeeded", "refused_at_preflight", "wall_seconds", "p50_seconds", "p95_seconds",
    "overhead_p50_seconds", "overhead_p95_seconds", "dependencies_p95_seconds",
    "shared_pieces_wait_p95_seconds", "namespace_p95_seconds", "hold_capacity_p95_seconds",
    "worker_peak_rss_mb", "worker_cpu_seconds_per_rollout", "children_cpu_seconds_per_rollout",
    "clustersim_cpu_seconds", "temporal_cpu_seconds", "machine_cpu_seconds", "cpu_utilization",
    "cpu_floor_seconds", "history_events_per_rollout",
)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["profile"], run["phase"], run["n"]), []).append(run)
    rows = []
    for (profile, phase, n), members in sorted(groups.items()):
        row: dict[str, Any] = {"profile": profile, "phase": phase, "n": n}
        for key in SUMMARIZED:
            known = [float(m[key]) for m in members if m.get(key) is not None]
            row[key] = spread(known) if known else None
        agents = sorted({a for m in members for a in m["api_requests_per_rollout"]})
        row["api_requests_per_rollout"] = {
            agent: spread([float(m["api_requests_per_rollout"].get(agent, 0)) for m in members])
            for agent in agents
        }
        single = groups.get((profile, phase, 1))
        if single:
            base = statistics.median(m["p95_seconds"] for m in single)
            row["p95_ratio_to_n1"] = round(row["p95_seconds"]["median"] / base, 2)
        rows.append(row)
    return rows


def table(summary: list[dict[str, Any]]) -> str:
    header = (
        f"{'profile':<6} {'phase':<5} {'N':>3} {'ok':>7} {'refused':>7} {'wall s':>8} "
        f"{'p50 s':>7} {'p95 s':>7} {'x N=1':>6} {'ovh p50':>8} {'ask p95':>8} {'RSS MB':>7} "
        f"{'CPU/r':>6} {'API/r (worker+helm)':>20} {'events/r':>8} {'sim CPU':>8} "
        f"{'floor s':>8} {'busy':>5}"
    )
    lines = [header, "(medians over the repetitions; the JSON has min/median/max)"]
    for row in summary:
        api = row["api_requests_per_rollout"]
        worker = api.get("OpenAPI-Generator", {}).get("median", 0)
        helm = sum(v["median"] for k, v in api.items() if k.lower().startswith("helm"))
        lines.append(
            f"{row['profile']:<6} {row['phase']:<5} {row['n']:>3} "
            f"{row['succeeded']['median']:>7} {row['refused_at_preflight']['median']:>7} "
            f"{row['wall_seconds']['median']:>8} {row['p50_seconds']['median']:>7} "
            f"{row['p95_seconds']['median']:>7} {row.get('p95_ratio_to_n1', '-')!s:>6} "
            f"{row['overhead_p50_seconds']['median']:>8} "
            f"{(row['shared_pieces_wait_p95_seconds'] or {}).get('median', '-')!s:>8} "
            f"{(row['namespace_p95_seconds'] or {}).get('median', '-')!s:>7} "
            f"{row['worker_peak_rss_mb']['median']:>7} "
            f"{row['worker_cpu_seconds_per_rollout']['median']:>6} "
            f"{f'{worker:g}+{helm:g}':>20} {row['history_events_per_rollout']['median']:>8} "
            f"{row['clustersim_cpu_seconds']['median']:>8} "
            f"{row['cpu_floor_seconds']['median']:>8} "
            f"{row['cpu_utilization']['median']:>5.0%}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 5, 20, 50])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profiles", nargs="+", default=["tight", "room"],
                        choices=["tight", "room"])
    parser.add_argument("--json", type=Path, default=None,
                        help="write the JSON report here instead of to stdout")
    args = parser.parse_args()
    report = asyncio.run(measure(sorted(args.n), args.reps, args.profiles))
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.json is None:
        print(text)
    else:
        args.json.write_text(text + "\n")
    print(table(report["summary"]))


if __name__ == "__main__":
    main()
