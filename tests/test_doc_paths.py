"""Every repository path a module docstring or a README names exists, and no document outside the
repository is cited.

Where it sits: a repository check beside `make lint`. Files move (clustersim into
clustersim/src/clustersim/, the client side into rollouts/), and a docstring that names the old
place keeps reading as true. This test reads the module docstrings of the product and clustersim
Python files, every README.md and docs/*.md, extracts the names that are clearly repository
paths, and fails listing each one that does not exist.

What counts as a path, so that URLs, API paths (`/v1/models`, `pods/NAME/log`), Kubernetes
group/version strings, workflow IDs and example paths (`~/.kube/config`, `/tmp/...`) are left
alone:
- a token made of `/`-separated segments, not preceded by `/`, `~`, `$`, `:` or `.`, whose first
  segment is a top-level entry of the repository (or of the citing file's directory), and which
  either ends in a known file extension or `/`, or is a whole backticked span;
- a markdown link target that is not a URL or an anchor;
- a bare `NAME.md`: a document; it must be in the repository (beside the citing file or at its
  root), since product text never cites one from elsewhere.
Fenced code blocks in markdown are skipped: they hold commands and captured output, whose
slashes are targets and temporary paths, not references.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CLUSTERSIM_PACKAGE = "clustersim/src/clustersim"
# Directories never scanned for README.md files: environments, caches, VCS data.
SKIPPED_DIRS = {".venv", ".git", "node_modules", "__pycache__", "build", "dist"}
FILE_EXTENSIONS = (
    ".py", ".md", ".yaml", ".yml", ".json", ".toml", ".txt", ".sh", ".cfg", ".ini", ".tgz",
    ".tpl", ".lock",
)

SEGMENT = r"[A-Za-z0-9_.-]+"
# Not preceded by a character that makes it the middle of something else: another path, a home
# or absolute path, a URL (`://`), a shell variable, a dotted name.
PATH_TOKEN = re.compile(rf"(?<![\w/~$:.@-])({SEGMENT}(?:/{SEGMENT})+/?|{SEGMENT}/)")
BACKTICKED = re.compile(r"`([^`\n]+)`")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCUMENT = re.compile(r"(?<![\w/.-])([A-Za-z0-9_-]+\.md)\b")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Reference:
    """A path named in `source` (repository-relative) and whether it was a whole backticked span."""

    source: str
    path: str
    whole_span: bool = False
    link: bool = False


def entries(directory: Path, root: Path) -> set[str]:
    """The names in `directory` a document may cite: not .git, nothing .gitignore excludes (a
    `.venv/bin/...` in a README is an instruction, not a file of the repository)."""
    if not directory.is_dir():
        return set()
    gitignore = root / ".gitignore"
    patterns = [line.strip().rstrip("/") for line in gitignore.read_text().splitlines()] if (
        gitignore.exists()
    ) else []
    return {
        entry.name
        for entry in directory.iterdir()
        if entry.name != ".git"
        and not any(pattern and fnmatch.fnmatch(entry.name, pattern) for pattern in patterns)
    }


def references_in(text: str, source: str) -> Iterator[Reference]:
    """The path-shaped names in one piece of prose (a docstring, or markdown outside fences)."""
    spans = {match.group(1).strip() for match in BACKTICKED.finditer(text)}
    for match in PATH_TOKEN.finditer(text):
        token = match.group(1).rstrip(".")
        yield Reference(source, token, whole_span=token in spans)
    links = set()
    for match in MARKDOWN_LINK.finditer(text):
        target = match.group(1).split("#", 1)[0]
        if target and "://" not in target and not target.startswith("mailto:"):
            links.add(target)
            yield Reference(source, target, link=True)
    for match in DOCUMENT.finditer(text):
        if match.group(1) not in links:
            yield Reference(source, match.group(1))


def without_fences(markdown: str) -> str:
    kept: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return "\n".join(kept)


def missing_paths(root: Path, references: list[Reference]) -> list[str]:
    """`source: path` for each reference that names a repository path that is not there."""
    top = entries(root, root)
    missing: list[str] = []
    for ref in references:
        base = (root / ref.source).parent
        path = ref.path
        if "/" not in path.rstrip("/") and not path.endswith("/") and not ref.link:
            # A bare document name: beside the citing file or at the root, nowhere else.
            if not ((base / path).exists() or (root / path).exists()):
                missing.append(f"{ref.source}: {path} (a document outside the repository)")
            continue
        first = path.split("/", 1)[0]
        local = entries(base, root)
        looks_like_file = path.endswith("/") or path.endswith(FILE_EXTENSIONS)
        if not ref.link and not (first in top or first in local):
            continue
        if not (ref.link or looks_like_file or ref.whole_span):
            continue
        if not ((root / path).exists() or (base / path).exists()):
            missing.append(f"{ref.source}: {path}")
    return missing


def python_roots(root: Path) -> list[str]:
    """What the product wheel ships (pyproject.toml: packages and py-modules), and clustersim."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]]
    modules = [f"{name}.py" for name in setuptools["py-modules"]]
    return [*packages, *modules, CLUSTERSIM_PACKAGE]


def python_files(root: Path) -> Iterator[Path]:
    for name in python_roots(root):
        entry = root / name
        if entry.is_file():
            yield entry
        else:
            yield from sorted(p for p in entry.rglob("*.py") if "__pycache__" not in p.parts)


def markdown_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.md")):
        relative = path.relative_to(root)
        if SKIPPED_DIRS & set(relative.parts):
            continue
        if path.name == "README.md" or relative.parts[0] == "docs":
            yield path


def repository_references(root: Path) -> list[Reference]:
    references: list[Reference] = []
    for path in python_files(root):
        docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        if docstring:
            references += references_in(docstring, str(path.relative_to(root)))
    for path in markdown_files(root):
        references += references_in(without_fences(path.read_text()), str(path.relative_to(root)))
    return references


def test_the_scan_covers_every_product_package() -> None:
    roots = python_roots(REPO)
    assert {"workflows", "rollouts", "cli", "worker.py", CLUSTERSIM_PACKAGE} <= set(roots)
    assert all((REPO / name).exists() for name in roots)


def test_every_path_named_in_docstrings_and_readmes_exists() -> None:
    references = repository_references(REPO)
    assert len(references) > 50, "the scan found almost nothing: the extraction is broken"
    missing = missing_paths(REPO, references)
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)


# --- the checker itself, on a synthetic repository --------------------------------------------


@pytest.fixture
def synthetic_repo(tmp_path: Path) -> Path:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "rollout.py").write_text('"""Nothing."""\n')
    (tmp_path / "charts" / "lws-demo").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "architecture.md").write_text("# Architecture\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".gitignore").write_text(".venv/\n")
    return tmp_path


def check(root: Path, text: str, source: str = "workflows/rollout.py") -> list[str]:
    return missing_paths(root, list(references_in(text, source)))


def test_a_missing_file_path_in_a_docstring_is_named(synthetic_repo: Path) -> None:
    text = "Where it sits: called from workflows/starting.py; see docs/architecture.md."
    assert check(synthetic_repo, text) == ["workflows/rollout.py: workflows/starting.py"]


def test_existing_paths_pass(synthetic_repo: Path) -> None:
    text = (
        "See workflows/rollout.py, `charts/lws-demo`, docs/ and [the map](docs/architecture.md)"
        " (section `docs/architecture.md`)."
    )
    assert check(synthetic_repo, text) == []


def test_a_missing_backticked_directory_is_named(synthetic_repo: Path) -> None:
    assert check(synthetic_repo, "The chart `charts/gateway-demo` installs it.") == [
        "workflows/rollout.py: charts/gateway-demo"
    ]


def test_a_document_outside_the_repository_is_named(synthetic_repo: Path) -> None:
    assert check(synthetic_repo, "the nine phases of DESIGN.md") == [
        "workflows/rollout.py: DESIGN.md (a document outside the repository)"
    ]


def test_a_broken_markdown_link_is_named(synthetic_repo: Path) -> None:
    missing = check(synthetic_repo, "[layers](layers.md#top)", source="docs/architecture.md")
    assert missing == ["docs/architecture.md: layers.md"]


def test_urls_api_paths_and_example_paths_are_not_repository_paths(synthetic_repo: Path) -> None:
    text = (
        "GET /v1/models and pods/NAME/log through https://example.com/workflows/x.py; "
        "KUBECONFIG=~/.kube/config, /tmp/workflows/run.py, $GATEWAY/v1/models, "
        "leaderworkerset.x-k8s.io/v1, the workflow rollout/<cluster>/<namespace>/<name>, "
        "the target `workflows/default/demo`? no: only backticked spans are checked whole, "
        "and .venv/bin/kubectl is generated."
    )
    # The one backticked span whose first segment is a top-level directory is checked; the rest
    # are not repository paths at all.
    assert check(synthetic_repo, text) == ["workflows/rollout.py: workflows/default/demo"]


def test_fenced_code_is_not_scanned() -> None:
    markdown = "see docs/gone.md\n```sh\ncat workflows/gone.py\n```\nand after\n"
    assert without_fences(markdown) == "see docs/gone.md\nand after"
