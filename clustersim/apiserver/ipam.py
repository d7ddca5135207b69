"""Service cluster IPs (from 127.200.0.0/16, so they are routable on loopback) and node ports."""

from __future__ import annotations

import ipaddress

CLUSTER_IP_RANGE = ipaddress.ip_network("127.200.0.0/16")
NODE_PORT_RANGE = range(30000, 32768)
# the `kubernetes` Service in `default` always gets the first address, as on a real cluster
KUBERNETES_SERVICE_IP = str(CLUSTER_IP_RANGE.network_address + 1)


class ServiceAddresses:
    """Allocation state of cluster IPs and node ports."""

    def __init__(self) -> None:
        self._ips: set[str] = set()
        self._ports: set[int] = set()
        self._next_ip = 2
        self._next_port = NODE_PORT_RANGE.start

    def in_range(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return address in CLUSTER_IP_RANGE and address not in (
            CLUSTER_IP_RANGE.network_address, CLUSTER_IP_RANGE.broadcast_address)

    def is_allocated(self, ip: str) -> bool:
        return ip in self._ips

    def reserve_ip(self, ip: str) -> None:
        self._ips.add(ip)

    def release_ip(self, ip: str) -> None:
        self._ips.discard(ip)

    def next_ip(self) -> str | None:
        """The next free address (not reserved yet: call `reserve_ip` when committing)."""
        size = CLUSTER_IP_RANGE.num_addresses - 2
        for step in range(size):
            offset = (self._next_ip - 1 + step) % size + 1
            candidate = str(CLUSTER_IP_RANGE.network_address + offset)
            if candidate not in self._ips:
                self._next_ip = offset + 1
                return candidate
        return None

    def reserve_port(self, port: int) -> None:
        self._ports.add(port)

    def release_port(self, port: int) -> None:
        self._ports.discard(port)

    def port_in_use(self, port: int) -> bool:
        return port in self._ports

    def next_port(self, taken: set[int]) -> int | None:
        """The next free node port that is not in `taken` (not reserved yet)."""
        size = len(NODE_PORT_RANGE)
        for step in range(size):
            candidate = NODE_PORT_RANGE.start + (self._next_port - NODE_PORT_RANGE.start + step) \
                % size
            if candidate not in self._ports and candidate not in taken:
                self._next_port = candidate + 1
                return candidate
        return None
