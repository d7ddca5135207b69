"""Pod IP allocation from 127.1.0.0/16 upward (never 127.0.0.1), unique among live pods.

Every address in 127.0.0.0/8 reaches the loopback interface on Linux, so fake servers can bind
their pod IP without any network setup. Several simulated clusters may run on one machine (tests,
a demo); each agent therefore claims whole /24 blocks with an advisory lock file
(`<tmp>/clustersim-ipam/<block>.lock`, held while the agent runs and released by the OS if it
dies; see `clustersim.ipblocks`, which the API server uses for Service IPs too), so two agents
never hand out the same pod IP.
"""

from __future__ import annotations

import ipaddress
import pathlib

from clustersim.ipblocks import BlockClaims

BLOCK_SIZE = 256


class IpExhausted(RuntimeError):
    """No free pod IP is left in the range."""


class PodIpAllocator:
    def __init__(self, cidr: str = "127.1.0.0/16", lock_dir: pathlib.Path | None = None) -> None:
        self._claims = BlockClaims(cidr, prefix=24, lock_dir=lock_dir)
        self._owners: dict[str, str] = {}
        self._by_owner: dict[str, str] = {}
        self._last = 0

    def _claim_block(self) -> None:
        if self._claims.claim_next() is None:
            raise IpExhausted("every pod IP block is claimed by a running clustersim agent")

    def _free_in_claimed(self) -> str | None:
        """The next free address after the last one handed out (like host-local IPAM, a freed
        address is not reused at once, so stale endpoints do not reach a new pod)."""
        candidates = [
            block + offset
            for block in self._claims.claimed()
            for offset in range(1, BLOCK_SIZE - 1)
        ]
        start = next((i for i, value in enumerate(candidates) if value > self._last), 0)
        for value in candidates[start:] + candidates[:start]:
            address = str(ipaddress.ip_address(value))
            if address not in self._owners and address != "127.0.0.1":
                self._last = value
                return address
        return None

    def allocate(self, owner: str) -> str:
        """The owner's IP (the same one on repeated calls), or a fresh one."""
        if owner in self._by_owner:
            return self._by_owner[owner]
        address = self._free_in_claimed()
        if address is None:
            self._claim_block()
            address = self._free_in_claimed()
        if address is None:
            raise IpExhausted("all pod IPs in use")
        self._owners[address] = owner
        self._by_owner[owner] = address
        return address

    def reserve(self, owner: str, address: str) -> bool:
        """Keep an address an existing pod already has (agent restart), if its block is ours."""
        block = self._claims.block_of(int(ipaddress.ip_address(address)))
        if block is None or not self._claims.try_claim(block):
            return False
        current = self._owners.get(address)
        if current is not None and current != owner:
            return False
        self._owners[address] = owner
        self._by_owner[owner] = address
        return True

    def release(self, owner: str) -> None:
        address = self._by_owner.pop(owner, None)
        if address is not None:
            self._owners.pop(address, None)

    def close(self) -> None:
        """Give the claimed blocks back (the agent is stopping)."""
        self._claims.release_all()
