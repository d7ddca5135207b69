"""Service cluster IPs (from 127.200.0.0/16, so they are routable on loopback) and node ports.

Several API servers may run on one machine at once, and the agent of each cluster binds its
Services' cluster IPs on loopback, so two servers must never hand out the same address. Each
server therefore claims whole /24 blocks of 127.200.0.0/16 through the lock files of
`clustersim.ipblocks` (the mechanism the agent uses for pod IPs) and allocates only inside its own
blocks. The first block is claimed when the first address is needed; its first address is the
`kubernetes` Service's, as the first address of the service range is on a real cluster. `close()`
gives the blocks back; a server that dies loses its claims with its process.
"""

from __future__ import annotations

import ipaddress
import logging
import pathlib

from clustersim.ipblocks import BlockClaims

LOG = logging.getLogger(__name__)

CLUSTER_IP_RANGE = ipaddress.ip_network("127.200.0.0/16")
NODE_PORT_RANGE = range(30000, 32768)
BLOCK_PREFIX = 24


class ServiceAddresses:
    """Allocation state of cluster IPs (inside this server's claimed blocks) and node ports."""

    def __init__(self, lock_dir: pathlib.Path | None = None) -> None:
        self._claims = BlockClaims(str(CLUSTER_IP_RANGE), prefix=BLOCK_PREFIX, lock_dir=lock_dir)
        self._ips: set[str] = set()
        self._ports: set[int] = set()
        self._last_ip = 0
        self._next_port = NODE_PORT_RANGE.start

    # -- blocks -----------------------------------------------------------------------------

    def blocks(self) -> list[str]:
        """The claimed blocks as CIDRs, in address order."""
        return [f"{ipaddress.ip_address(b)}/{BLOCK_PREFIX}" for b in self._claims.claimed()]

    def _first_block(self) -> int | None:
        claimed = self._claims.claimed()
        if claimed:
            return claimed[0]
        return self._claims.claim_next()

    def kubernetes_service_ip(self) -> str | None:
        """The `kubernetes` Service's address: the first one of this server's first block."""
        block = self._first_block()
        return None if block is None else str(ipaddress.ip_address(block + 1))

    def _usable(self, value: int) -> bool:
        return value not in (int(CLUSTER_IP_RANGE.network_address),
                             int(CLUSTER_IP_RANGE.broadcast_address))

    def _offsets(self) -> range:
        # like the agent's pod IPs, each block's own network and broadcast addresses stay unused
        return range(1, self._claims.block_size - 1)

    def close(self) -> None:
        """Give the claimed blocks back (the server is stopping)."""
        self._claims.release_all()

    # -- cluster IPs ------------------------------------------------------------------------

    def in_range(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return address in CLUSTER_IP_RANGE and self._usable(int(address))

    def is_allocated(self, ip: str) -> bool:
        """Whether an address in range is taken: by this server, or by another live server
        whose block it is in (a block nobody holds is claimed for this server)."""
        if ip in self._ips:
            return True
        block = self._claims.block_of(int(ipaddress.ip_address(ip)))
        return block is None or not self._claims.try_claim(block)

    def reserve_ip(self, ip: str) -> None:
        """Record an address as used (a Service is stored with it, or loaded from state)."""
        self._ips.add(ip)
        try:
            block = self._claims.block_of(int(ipaddress.ip_address(ip)))
        except ValueError:
            return
        if block is not None and not self._claims.try_claim(block):
            LOG.warning("cluster IP %s is in a block another clustersim server holds "
                        "(lock file PID %s)", ip, self._claims.holder(block))

    def release_ip(self, ip: str) -> None:
        self._ips.discard(ip)

    def _free_in_claimed(self) -> str | None:
        """The next free address of the claimed blocks after the last one handed out."""
        candidates = [block + offset for block in self._claims.claimed()
                      for offset in self._offsets()]
        start = next((i for i, value in enumerate(candidates) if value > self._last_ip), 0)
        for value in candidates[start:] + candidates[:start]:
            address = str(ipaddress.ip_address(value))
            if address not in self._ips:
                self._last_ip = value
                return address
        return None

    def next_ip(self) -> str | None:
        """The next free address (not reserved yet: call `reserve_ip` when committing),
        claiming another block when the claimed ones are full."""
        if self._first_block() is None:
            return None
        address = self._free_in_claimed()
        while address is None:
            if self._claims.claim_next() is None:
                return None
            address = self._free_in_claimed()
        return address

    # -- node ports -------------------------------------------------------------------------

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
