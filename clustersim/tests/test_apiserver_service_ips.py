"""Service cluster IPs of API servers running at the same time on one machine never collide: each
server claims its own /24 blocks of 127.200.0.0/16 through lock files (the mechanism the agent
uses for pod IPs), gives them back when it stops, and a dead process's claims are free again."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from clustersim.apiserver import ApiServer, ApiServerConfig
from clustersim.ipblocks import BlockClaims

BLOCK_0 = int(ipaddress.ip_address("127.200.0.0"))
BLOCK_1 = int(ipaddress.ip_address("127.200.1.0"))


def test_a_block_is_held_until_released_and_a_dead_claimers_block_is_free(
    tmp_path: Path,
) -> None:
    mine = BlockClaims("127.200.0.0/16", lock_dir=tmp_path)
    assert mine.claim_next() == BLOCK_0
    other = BlockClaims("127.200.0.0/16", lock_dir=tmp_path)
    assert not other.try_claim(BLOCK_0), "a block held in this process is not handed out twice"
    assert other.claim_next() == BLOCK_1
    mine.release_all()
    assert other.try_claim(BLOCK_0)
    other.release_all()

    # another process claims block 0 and dies without releasing it
    script = (
        "import os, sys; from pathlib import Path; from clustersim.ipblocks import BlockClaims; "
        f"c = BlockClaims('127.200.0.0/16', lock_dir=Path({str(tmp_path)!r})); "
        "assert c.claim_next() is not None; print(os.getpid(), flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        survivor = BlockClaims("127.200.0.0/16", lock_dir=tmp_path)
        assert survivor.holder(BLOCK_0) == pid
        assert not survivor.try_claim(BLOCK_0), "a live process's claim is respected"
    finally:
        child.kill()
        child.wait(timeout=10)
    assert survivor.holder(BLOCK_0) == pid, "the stale claim is still on disk"
    assert survivor.try_claim(BLOCK_0), "a dead process's claim is reclaimable"
    assert survivor.holder(BLOCK_0) != pid
    survivor.release_all()


def _in_block(address: str, block: int) -> bool:
    return block <= int(ipaddress.ip_address(address)) < block + 256


async def _call(api: k8s.ApiClient, method: str, *args: Any) -> Any:
    core = k8s.CoreV1Api(api)
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: getattr(core, method)(*args)
    )


async def _service_ips(server: ApiServer) -> tuple[str, str]:
    api = k8s_config.new_client_from_config(str(server.kubeconfig_path))
    kubernetes = await _call(api, "read_namespaced_service", "kubernetes", "default")
    created = await _call(
        api,
        "create_namespaced_service",
        "default",
        {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
    )
    return str(kubernetes.spec.cluster_ip), str(created.spec.cluster_ip)


async def test_servers_running_together_allocate_from_their_own_blocks(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    first = ApiServer(ApiServerConfig(data_dir=tmp_path / "a", ip_lock_dir=locks))
    second = ApiServer(ApiServerConfig(data_dir=tmp_path / "b", ip_lock_dir=locks))
    await first.start()
    try:
        await second.start()
        try:
            first_kubernetes, first_web = await _service_ips(first)
            second_kubernetes, second_web = await _service_ips(second)
            assert first_kubernetes == "127.200.0.1" and _in_block(first_web, BLOCK_0)
            assert second_kubernetes == "127.200.1.1" and _in_block(second_web, BLOCK_1)
            assert first_web != first_kubernetes and second_web != second_kubernetes
            # an address in the other server's block is taken
            api = k8s_config.new_client_from_config(str(second.kubeconfig_path))
            with pytest.raises(ApiException) as error:
                await _call(
                    api,
                    "create_namespaced_service",
                    "default",
                    {"metadata": {"name": "stolen"},
                     "spec": {"clusterIP": "127.200.0.77", "ports": [{"port": 80}]}},
                )
            assert error.value.status == 422
            assert "provided IP is already allocated" in str(error.value.body)
        finally:
            await second.stop()
    finally:
        await first.stop()
    assert not any(BlockClaims("127.200.0.0/16", lock_dir=locks).holder(b) for b in
                   (BLOCK_0, BLOCK_1)), "the claims are given back at shutdown"
    third = ApiServer(ApiServerConfig(data_dir=tmp_path / "c", ip_lock_dir=locks))
    await third.start()
    try:
        assert (await _service_ips(third))[0] == "127.200.0.1"
    finally:
        await third.stop()
