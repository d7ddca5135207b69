"""Startup, readiness and liveness probes against the fake servers on the pod IP.

httpGet (2xx/3xx succeeds), tcpSocket, and grpc (checked as a TCP connect: the fake servers do
not speak gRPC health) are real network checks on loopback; exec probes always succeed. Periods
and delays follow the probe spec times the time scale (never more often than every 0.1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from clustersim.agent.profile import TimeScale

PROBE_AGENT = "kube-probe/1.33"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str


def _port(value: Any, container: dict[str, Any]) -> int | None:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    for port in container.get("ports") or []:
        if port.get("name") == text:
            return int(port["containerPort"])
    return None


async def _tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return ProbeResult(False, f"dial tcp {host}:{port}: i/o timeout")
    except OSError:
        return ProbeResult(False, f"dial tcp {host}:{port}: connect: connection refused")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, "")


async def _status_code(host: str, port: int, path: str, headers: dict[str, str]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        request = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", f"User-Agent: {PROBE_AGENT}",
                   "Accept: */*", "Connection: close"]
        request += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(request) + "\r\n\r\n").encode())
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionResetError("no HTTP status line")
    return int(parts[1])


async def _http_get(url: str, host: str, port: int, path: str, headers: dict[str, str],
                    timeout: float) -> ProbeResult:
    """One plain-HTTP probe: a new connection, the request, the status line, as the kubelet's
    prober does. Written on asyncio streams because probes are the agent's most frequent
    requests: a client library's per-request machinery cost more than the probe itself."""
    try:
        status = await asyncio.wait_for(_status_code(host, port, path, headers), timeout)
    except TimeoutError:
        return ProbeResult(
            False,
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
            "headers)",
        )
    except ConnectionRefusedError:
        return ProbeResult(
            False, f'Get "{url}": dial tcp {host}:{port}: connect: connection refused'
        )
    except OSError:
        return ProbeResult(False, f'Get "{url}": EOF')
    if 200 <= status < 400:
        return ProbeResult(True, "")
    return ProbeResult(False, f"HTTP probe failed with statuscode: {status}")


async def probe_once(
    spec: dict[str, Any],
    container: dict[str, Any],
    pod_ip: str,
    session: aiohttp.ClientSession,
    timeout: float,
) -> ProbeResult:
    if "httpGet" in spec:
        action = spec["httpGet"]
        port = _port(action.get("port"), container)
        if port is None:
            return ProbeResult(False, f"invalid port {action.get('port')!r}")
        scheme = str(action.get("scheme") or "HTTP").lower()
        host = str(action.get("host") or pod_ip)
        path = str(action.get("path") or "/")
        url = f"{scheme}://{host}:{port}{path}"
        headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
        if scheme == "http":
            return await _http_get(url, host, port, path, headers, timeout)
        try:
            async with session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False
            ) as response:
                if 200 <= response.status < 400:
                    return ProbeResult(True, "")
                return ProbeResult(False, f"HTTP probe failed with statuscode: {response.status}")
        except TimeoutError:
            return ProbeResult(
                False,
                f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
                "headers)",
            )
        except aiohttp.ClientError:
            return ProbeResult(
                False, f'Get "{url}": dial tcp {host}:{port}: connect: connection refused'
            )
    if "tcpSocket" in spec:
        action = spec["tcpSocket"]
        port = _port(action.get("port"), container)
        if port is None:
            return ProbeResult(False, f"invalid port {action.get('port')!r}")
        return await _tcp(str(action.get("host") or pod_ip), port, timeout)
    if "grpc" in spec:
        port = int(spec["grpc"].get("port", 0))
        result = await _tcp(pod_ip, port, timeout)
        if result.ok:
            return result
        return ProbeResult(
            False,
            f'timeout: failed to connect service "{pod_ip}:{port}" within {timeout:g}s: '
            "context deadline exceeded",
        )
    return ProbeResult(True, "")


class ProbeWorker:
    """Runs one probe of one container instance and reports threshold crossings."""

    def __init__(
        self,
        kind: str,
        spec: dict[str, Any],
        container: dict[str, Any],
        pod_ip: str,
        scale: TimeScale,
        session: aiohttp.ClientSession,
        on_change: Callable[[str, bool], None],
        on_failure: Callable[[str, str], None],
    ) -> None:
        self.kind = kind
        self.spec = spec
        self.container = container
        self.pod_ip = pod_ip
        self.scale = scale
        self.session = session
        self.on_change = on_change
        self.on_failure = on_failure
        self.success: bool | None = None

    async def run(self) -> None:
        spec = self.spec
        period = self.scale.period(float(spec.get("periodSeconds") or 10))
        timeout = max(0.5, self.scale.delay(float(spec.get("timeoutSeconds") or 1)))
        success_threshold = int(spec.get("successThreshold") or 1)
        failure_threshold = int(spec.get("failureThreshold") or 3)
        await asyncio.sleep(self.scale.delay(float(spec.get("initialDelaySeconds") or 0)))
        successes = failures = 0
        while True:
            result = await probe_once(spec, self.container, self.pod_ip, self.session, timeout)
            if result.ok:
                successes, failures = successes + 1, 0
                if successes >= success_threshold and self.success is not True:
                    self.success = True
                    self.on_change(self.kind, True)
            else:
                successes, failures = 0, failures + 1
                self.on_failure(self.kind, result.message)
                if failures >= failure_threshold and self.success is not False:
                    self.success = False
                    self.on_change(self.kind, False)
                    if self.kind in ("liveness", "startup"):
                        return
            if self.kind == "startup" and self.success:
                return
            await asyncio.sleep(period)
