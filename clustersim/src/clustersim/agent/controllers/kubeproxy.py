"""A kube-proxy for loopback Service IPs, and a stand-in cloud load balancer.

For every Service whose clusterIP is on loopback (clustersim allocates 127.200.0.0/16), each
port listens on clusterIP:port while the Service has ready endpoints and forwards TCP to one of
them (round robin per connection); without ready endpoints the port is closed, so clients see
"connection refused" as kube-proxy's REJECT rule gives. LoadBalancer Services get their clusterIP
as `status.loadBalancer.ingress`. Addresses outside 127.0.0.0/8 (a real cluster) are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging

from clustersim.agent.context import AgentContext
from clustersim.agent.kubeclient import SERVICES
from clustersim.agent.meta import KubeObject, key_of, name_of, namespace_of, split_key
from clustersim.agent.workqueue import Controller

log = logging.getLogger("clustersim.agent.kubeproxy")


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback and address != "127.0.0.1"
    except ValueError:
        return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


class ServiceProxy(Controller):
    name = "kube-proxy"

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._listeners: dict[tuple[str, int], asyncio.Server] = {}
        self._targets: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self._owners: dict[tuple[str, int], str] = {}
        self.conflicts: dict[str, str] = {}
        self._turn = itertools.count()
        ctx.informers.services.add_handler(lambda _k, s, _o: self.queue.add(key_of(s)))
        ctx.informers.endpoints.add_handler(lambda _k, e, _o: self.queue.add(key_of(e)))

    def _desired(self, service: KubeObject | None) -> dict[tuple[str, int], list[tuple[str, int]]]:
        if service is None:
            return {}
        spec = service.get("spec") or {}
        cluster_ip = str(spec.get("clusterIP") or "")
        if not _loopback(cluster_ip):
            return {}
        endpoints = self.ctx.informers.endpoints.get(namespace_of(service), name_of(service)) or {}
        desired: dict[tuple[str, int], list[tuple[str, int]]] = {}
        for port in spec.get("ports") or []:
            if str(port.get("protocol") or "TCP") != "TCP":
                continue
            targets = []
            for subset in endpoints.get("subsets") or []:
                ports = subset.get("ports") or []
                match = next((p for p in ports if p.get("name") == port.get("name")), None)
                if match is None and len(ports) == 1:
                    match = ports[0]
                if match is None:
                    continue
                targets += [
                    (str(a["ip"]), int(match["port"])) for a in subset.get("addresses") or []
                ]
            if targets:
                desired[(cluster_ip, int(port["port"]))] = targets
        return desired

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        service = self.ctx.informers.services.get(namespace, name)
        desired = self._desired(service)
        owned = {address for address, owner in self._owners.items() if owner == key}
        for address in owned - set(desired):
            await self._close(address)
        for address, targets in desired.items():
            self._targets[address] = targets
            if address not in self._listeners:
                await self._open(address, key)
        if service is not None and (service.get("spec") or {}).get("type") == "LoadBalancer":
            await self._publish_load_balancer(service)
        if any(address not in self._listeners for address in desired):
            return 5.0
        return None

    async def _open(self, address: tuple[str, int], key: str) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            targets = self._targets.get(address) or []
            if not targets:
                writer.close()
                return
            host, port = targets[next(self._turn) % len(targets)]
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

        try:
            server = await asyncio.start_server(handle, address[0], address[1], reuse_address=True)
        except OSError as error:
            # Another simulated cluster on this machine may hold the same loopback address.
            log.warning("cannot serve Service %s on %s:%s: %s", key, *address, error)
            self.conflicts[f"{address[0]}:{address[1]}"] = str(error)
            return
        self.conflicts.pop(f"{address[0]}:{address[1]}", None)
        self._listeners[address] = server
        self._owners[address] = key

    async def _close(self, address: tuple[str, int]) -> None:
        server = self._listeners.pop(address, None)
        self._targets.pop(address, None)
        self._owners.pop(address, None)
        if server is not None:
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    async def _publish_load_balancer(self, service: KubeObject) -> None:
        cluster_ip = str((service.get("spec") or {}).get("clusterIP") or "")
        if not _loopback(cluster_ip):
            return
        wanted = {"ingress": [{"ip": cluster_ip, "ipMode": "VIP"}]}
        if ((service.get("status") or {}).get("loadBalancer") or {}) == wanted:
            return
        updated = await self.ctx.client.patch_status(
            SERVICES, name_of(service), {"loadBalancer": wanted}, namespace_of(service)
        )
        self.ctx.informers.services.upsert(updated)

    def listening(self) -> list[str]:
        return sorted(f"{ip}:{port}" for ip, port in self._listeners)

    async def shutdown(self) -> None:
        for address in list(self._listeners):
            await self._close(address)
