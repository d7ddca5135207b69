"""Benchmark of clustersim's API server: memory with a loaded cluster, write-to-watch latency.

Runs `python -m clustersim serve --port 0` as a subprocess (through embedded.clustersim_process),
loads the full reference stack (the LWS, Gateway API and inference-extension CRDs and every
rendered manifest, when ../shared/reference or $LLMD_REFERENCE_DIR is present) plus 10,000 extra
ConfigMaps, then reads the server's RSS from /proc. It then watches ConfigMaps and measures, for a
series of writes, the delay from sending the write to receiving its watch event, over loopback
HTTPS.

    .venv/bin/python bench/clustersim_api.py [--configmaps 10000] [--writes 300]

Prints one JSON document and a table. Goals: RSS under 300 MB, p50 latency under 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embedded.clustersim_process import ClusterSimProcess  # noqa: E402

STACK_NAMESPACE = "llm-d-wide-ep"
BULK_NAMESPACE = "bench-bulk"
WATCH_NAMESPACE = "bench-watch"
APPLY = "application/apply-patch+yaml"


def reference_dir() -> Path | None:
    configured = os.environ.get("LLMD_REFERENCE_DIR")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "reference"
    return candidate if (candidate / "NOTES.md").is_file() else None


def rss_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Api:
    """A minimal async client of the server (bearer token, the server's CA)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        async with self.session.request(
                method, self.url + path, data=data,
                headers={**self.headers, "Content-Type": content_type}) as response:
            return response.status, await response.json(content_type=None)


def resource_path(document: dict[str, Any], namespace: str | None) -> str:
    """The URL of an object of the reference stack (kinds it uses only)."""
    plurals = {"ConfigMap": "configmaps", "Service": "services",
               "ServiceAccount": "serviceaccounts", "Deployment": "deployments",
               "Role": "roles", "RoleBinding": "rolebindings",
               "CustomResourceDefinition": "customresourcedefinitions",
               "LeaderWorkerSet": "leaderworkersets", "HTTPRoute": "httproutes",
               "Gateway": "gateways", "InferencePool": "inferencepools",
               "InferenceModel": "inferencemodels"}
    api_version = document["apiVersion"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{scope}/{plurals[document['kind']]}/{document['metadata']['name']}"


async def load_reference_stack(api: Api, reference: Path) -> int:
    applied = 0
    crd_files = sorted((reference / "crds").rglob("*.yaml"))
    for path in crd_files:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                status, _ = await api.call("PATCH", resource_path(document, None)
                                           + "?fieldManager=bench", document, APPLY)
                applied += status in (200, 201)
    await asyncio.sleep(0.5)
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": STACK_NAMESPACE}})
    for path in sorted((reference / "rendered").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document["kind"] in ("DestinationRule", "Ingress"):
                continue
            status, answer = await api.call(
                "PATCH", resource_path(document, STACK_NAMESPACE) + "?fieldManager=bench",
                document, APPLY)
            if status not in (200, 201):
                raise RuntimeError(f"applying {document['kind']}: {answer}")
            applied += 1
    return applied


async def create_config_maps(api: Api, count: int, concurrency: int = 32) -> None:
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": BULK_NAMESPACE}})
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            status, answer = await api.call(
                "POST", f"/api/v1/namespaces/{BULK_NAMESPACE}/configmaps",
                {"metadata": {"name": f"cm-{index:05d}", "labels": {"bench": "bulk"}},
                 "data": {"index": str(index), "payload": "x" * 64}})
            if status != 201:
                raise RuntimeError(f"creating a ConfigMap: {answer}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def watch_latencies(api: Api, writes: int) -> list[float]:
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": WATCH_NAMESPACE}})
    arrived: dict[str, float] = {}
    events: asyncio.Queue[str] = asyncio.Queue()
    path = f"/api/v1/namespaces/{WATCH_NAMESPACE}/configmaps?watch=true&timeoutSeconds=300"

    async def read_watch(response: aiohttp.ClientResponse) -> None:
        async for line in response.content:
            if line.strip():
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                arrived[name] = time.perf_counter()
                events.put_nowait(name)

    async with api.session.get(api.url + path, headers=api.headers) as response:
        reader = asyncio.create_task(read_watch(response))
        latencies = []
        for index in range(writes):
            name = f"w-{index:04d}"
            sent = time.perf_counter()
            await api.call("POST", f"/api/v1/namespaces/{WATCH_NAMESPACE}/configmaps",
                           {"metadata": {"name": name}, "data": {"i": str(index)}})
            while name not in arrived:
                await asyncio.wait_for(events.get(), timeout=10)
            latencies.append((arrived[name] - sent) * 1000)
        reader.cancel()
    return latencies


async def run(url: str, token: str, ca_pem: str, pid: int, count: int, writes: int,
              reference: Path | None) -> dict[str, Any]:
    context = ssl.create_default_context(cadata=ca_pem)
    connector = aiohttp.TCPConnector(ssl=context, limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        api = Api(session, url, token)
        idle = rss_megabytes(pid)
        started = time.perf_counter()
        stack = await load_reference_stack(api, reference) if reference else 0
        stack_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await create_config_maps(api, count)
        bulk_seconds = time.perf_counter() - started
        await asyncio.sleep(1)
        loaded = rss_megabytes(pid)
        latencies = await watch_latencies(api, writes)
    ordered = sorted(latencies)
    return {
        "reference_stack_objects": stack,
        "reference_stack_seconds": round(stack_seconds, 2),
        "extra_configmaps": count,
        "configmap_creates_per_second": round(count / bulk_seconds, 1),
        "rss_idle_mb": round(idle, 1),
        "rss_loaded_mb": round(loaded, 1),
        "rss_goal_mb": 300,
        "watch_writes": writes,
        "watch_latency_p50_ms": round(statistics.median(ordered), 2),
        "watch_latency_p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "watch_latency_max_ms": round(ordered[-1], 2),
        "watch_latency_goal_p50_ms": 20,
    }


async def measure(count: int, writes: int, reference: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="clustersim-bench-") as directory:
        async with ClusterSimProcess(Path(directory), agent=False) as server:
            assert server.pid is not None
            config = yaml.safe_load(server.kubeconfig_path.read_text())
            cluster = config["clusters"][0]["cluster"]
            token = config["users"][0]["user"]["token"]
            ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
            return await run(server.info.api_url, token, ca_pem, server.pid, count, writes,
                             reference)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configmaps", type=int, default=10000)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    reference = reference_dir()
    result = asyncio.run(measure(args.configmaps, args.writes, reference))
    if reference is None:
        result["note"] = "reference stack not found (../shared/reference); loaded ConfigMaps only"
    print(json.dumps(result, indent=2))
    print()
    print(f"{'measure':<34}{'value':>12}")
    for key, value in result.items():
        print(f"{key:<34}{value!s:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
