"""The two distributions of this repository, built as wheels: the product (llmd-rollout) without
clustersim, and clustersim (clustersim/) with its package data, installable and runnable alone.

Both are built offline with `pip wheel --no-build-isolation --no-index` from a copy of the tree
(so no `build/` or egg-info lands in the repository); the build tools come from the dev extra.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# The packages the product ships, as pyproject.toml lists them (`spec*` → `spec`).
PRODUCT_PACKAGES = tuple(
    pattern.rstrip("*")
    for pattern in tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["packages"]["find"]["include"]
)
BUILD_TIMEOUT_SECONDS = 300
# What a build never reads and a copy need not carry (the environment, caches, earlier builds).
NOT_COPIED = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", ".import_linter_cache",
)


def build_wheel(source: Path, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--wheel-dir", str(out)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, check=False,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("source") / "llmd-rollout"
    shutil.copytree(REPO, copy, ignore=NOT_COPIED)
    return copy


@pytest.fixture(scope="module")
def product_wheel(source_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(source_copy, tmp_path_factory.mktemp("product-wheel"))


@pytest.fixture(scope="module")
def clustersim_wheel(source_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(source_copy / "clustersim", tmp_path_factory.mktemp("clustersim-wheel"))


def docker_context_ignore(root: Path) -> Callable[[str, list[str]], set[str]]:
    """shutil.copytree's `ignore` for .dockerignore's patterns: anchored at the context root,
    `**/` for any depth (the forms that file uses)."""
    patterns = [
        line.strip() for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]

    def ignored(directory: str, entries: list[str]) -> set[str]:
        relative = Path(directory).relative_to(root)
        return {
            entry for entry in entries
            for path in [(relative / entry).as_posix()]
            if any(
                fnmatch.fnmatch(path, pattern)
                or (pattern.startswith("**/") and fnmatch.fnmatch(entry, pattern[3:]))
                for pattern in patterns
            )
        }

    return ignored


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def metadata(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        [path] = [n for n in archive.namelist() if n.endswith(f".dist-info/{name}")]
        return archive.read(path).decode()


def test_the_product_wheel_has_the_product_and_no_clustersim(product_wheel: Path) -> None:
    contents = names(product_wheel)
    top_level = {name.split("/", 1)[0] for name in contents}

    assert not [name for name in contents if name.startswith("clustersim")]
    requirements = [
        line for line in metadata(product_wheel, "METADATA").splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert requirements and not [line for line in requirements if "clustersim" in line]
    assert {f"{package}/__init__.py" for package in PRODUCT_PACKAGES} <= contents
    assert {"worker.py", "starter.py"} <= contents
    assert "llmd-rollout = starter:main" in metadata(product_wheel, "entry_points.txt")
    # Package data the product reads at run time travels with it.
    assert [name for name in contents if name.startswith("manifests/") and name.endswith(".yaml")]
    dist_info = "llmd_rollout-0.1.0.dist-info"
    assert top_level == {*PRODUCT_PACKAGES, "worker.py", "starter.py", dist_info}


def test_the_clustersim_wheel_has_clustersim_with_its_profiles_and_nothing_of_ours(
    clustersim_wheel: Path,
) -> None:
    contents = names(clustersim_wheel)
    top_level = {name.split("/", 1)[0] for name in contents}

    assert top_level == {"clustersim", "clustersim-0.1.0.dist-info"}
    assert {
        "clustersim/__init__.py",
        "clustersim/__main__.py",
        "clustersim/agent/profiles/h200-2node.yaml",
        "clustersim/agent/profiles/h200-3node.yaml",
    } <= contents
    assert "clustersim = clustersim.cli:main" in metadata(clustersim_wheel, "entry_points.txt")


def test_clustersim_runs_from_its_own_wheel(clustersim_wheel: Path, tmp_path: Path) -> None:
    """Unpacked alone (as pip installs it) and first on the path, outside the repository: the
    command line answers and the built-in profiles load from the package data."""
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(clustersim_wheel) as archive:
        archive.extractall(unpacked)
    environment = {**os.environ, "PYTHONPATH": str(unpacked)}
    check = (
        "import clustersim, pathlib, sys; "
        "from clustersim.agent.profile import load_profile; "
        f"assert pathlib.Path(clustersim.__file__).is_relative_to({str(unpacked)!r}), "
        "clustersim.__file__; "
        "print(len(load_profile('h200-2node').nodes), len(load_profile('h200-3node').nodes))"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=60, check=False,
    )
    usage = subprocess.run(
        [sys.executable, "-m", "clustersim", "--help"], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=60, check=False,
    )

    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["2", "3"]
    assert usage.returncode == 0, usage.stderr
    assert "{serve,fault,up,agent}" in usage.stdout


def test_the_worker_image_context_builds_the_product_without_clustersim(
    tmp_path: Path, product_wheel: Path
) -> None:
    """The Dockerfile's `pip install .` sees the tree minus .dockerignore: clustersim is not
    there, and the product builds the same wheel without it."""
    context = tmp_path / "context"
    shutil.copytree(REPO, context, ignore=docker_context_ignore(REPO))
    assert not (context / "clustersim").exists()
    assert not (context / "tests").exists()

    wheel = build_wheel(context, tmp_path / "wheel")

    assert names(wheel) == names(product_wheel)


def test_the_worker_image_ships_the_bytecode_the_workflow_sandbox_imports(
    tmp_path: Path,
) -> None:
    """The sandbox imports the workflow modules again for every workflow run; in the image
    (PYTHONDONTWRITEBYTECODE, a read-only root filesystem) Python cannot cache their bytecode,
    so the Dockerfile compiles /app after copying it. Run its compileall, as written, on the
    image's context and find the bytecode of every workflow module."""
    (command,) = [
        line.split("&&")[1].strip().rstrip("\\").strip()
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.startswith("RUN ") and "compileall" in line
    ]
    context = tmp_path / "app"
    shutil.copytree(REPO, context, ignore=docker_context_ignore(REPO))
    argv = command.replace("'", "").replace("/app", str(context)).split()
    assert argv[:3] == ["python", "-m", "compileall"]
    subprocess.run([sys.executable, *argv[1:]], check=True, timeout=300)

    tag = sys.implementation.cache_tag
    modules = sorted(p.stem for p in (context / "workflows").glob("*.py"))
    compiled = sorted(
        p.name.removesuffix(f".{tag}.pyc")
        for p in (context / "workflows" / "__pycache__").glob(f"*.{tag}.pyc")
    )
    assert modules and compiled == modules
