"""A fixed port that is already taken is a clear error and a non-zero exit, never a random port.

Covers `clustersim serve --port`, `clustersim up --admin-port` and `clustersim agent
--admin-port`: each is run as a real process against a port this test holds open.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

RUN_TIMEOUT = 60.0


@pytest.fixture
def busy_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def _clustersim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustersim", *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=cwd, check=False,
    )


def test_serve_on_a_busy_port_exits_non_zero_naming_it(busy_port: int, tmp_path: Path) -> None:
    result = _clustersim("serve", "--port", str(busy_port), "--data-dir", str(tmp_path),
                         cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{busy_port} for the API server (--port)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "kubeconfig").exists()


def test_up_with_a_busy_admin_port_exits_non_zero_naming_it(busy_port: int,
                                                             tmp_path: Path) -> None:
    result = _clustersim("up", "--port", "0", "--admin-port", str(busy_port),
                         "--data-dir", str(tmp_path / "data"),
                         "--kubeconfig-out", str(tmp_path / "kubeconfig"),
                         "--info-out", str(tmp_path / "info.json"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert (f"cannot listen on 127.0.0.1:{busy_port} for the agent admin endpoint "
            "(--admin-port)") in result.stderr
    assert not (tmp_path / "info.json").exists()


def test_agent_with_a_busy_admin_port_fails_before_anything_else(busy_port: int,
                                                                  tmp_path: Path) -> None:
    # the kubeconfig does not even exist: the port is checked first, so that is the error shown
    result = _clustersim("agent", "--kubeconfig", str(tmp_path / "absent"),
                         "--admin-port", str(busy_port), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{busy_port}" in result.stderr
