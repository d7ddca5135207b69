"""Whole address blocks claimed through lock files, so clustersim processes on one machine never
hand out the same loopback address.

Several simulated clusters may run on one machine at once (tests, a demo). Every API server
allocates Service cluster IPs from 127.200.0.0/16 and every agent allocates pod IPs from
127.1.0.0/16; each of them claims whole /24 blocks of its range before using an address in them.

A claim is an advisory `flock` on `<lock dir>/<block network address>.lock` (by default
`$TMPDIR/clustersim-ipam/`), held for as long as the claimer keeps the file open. The file also
records the claimer's PID, for people looking at it. The kernel drops the lock when the process
exits, however it exits, so the block of a dead process is free again at once: a stale claim never
needs cleaning up. `flock` locks belong to an open file, not to a process, so two claimers in one
process (an API server and an agent started by `clustersim up`, several in-process servers in a
test) exclude each other too.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import pathlib
import tempfile


def default_lock_dir() -> pathlib.Path:
    return pathlib.Path(tempfile.gettempdir()) / "clustersim-ipam"


class BlockClaims:
    """The blocks of one range (e.g. the /24s of 127.200.0.0/16) this process has claimed."""

    def __init__(self, cidr: str, prefix: int = 24, lock_dir: pathlib.Path | None = None) -> None:
        network = ipaddress.ip_network(cidr)
        self.block_size = 1 << (network.max_prefixlen - prefix)
        self.blocks = [int(b.network_address) for b in network.subnets(new_prefix=prefix)]
        self._first = int(network.network_address)
        self._end = int(network.broadcast_address) + 1
        self.lock_dir = lock_dir or default_lock_dir()
        self._held: dict[int, int] = {}  # block -> open lock file descriptor

    def block_of(self, address: int) -> int | None:
        """The block an address (as an integer) falls in, or None outside the range."""
        if not self._first <= address < self._end:
            return None
        return address - (address - self._first) % self.block_size

    def claimed(self) -> list[int]:
        """The blocks this claimer holds, in address order."""
        return sorted(self._held)

    def owns(self, block: int) -> bool:
        return block in self._held

    def _path(self, block: int) -> pathlib.Path:
        return self.lock_dir / f"{ipaddress.ip_address(block)}.lock"

    def try_claim(self, block: int) -> bool:
        """Claim one block; True when it is (now) ours, False when a live process holds it."""
        if block in self._held:
            return True
        if block not in self.blocks:
            return False
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._path(block), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            return False
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._held[block] = descriptor
        return True

    def claim_next(self) -> int | None:
        """Claim the lowest block nobody holds; None when every block is taken."""
        for block in self.blocks:
            if block not in self._held and self.try_claim(block):
                return block
        return None

    def holder(self, block: int) -> int | None:
        """The PID recorded by the block's last claimer (it may have exited since)."""
        try:
            text = self._path(block).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release_all(self) -> None:
        """Give every claimed block back (the claimer is stopping)."""
        for descriptor in self._held.values():
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self._held.clear()
