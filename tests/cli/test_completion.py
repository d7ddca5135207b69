"""`llmd-rollout completion bash|zsh`: the script, sourced in a real bash, completes verbs,
schedule actions, flags and `-o` values as the parser defines them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "starter.py"), "completion", shell],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return done.stdout


def complete(shell_script: Path, *words: str) -> list[str]:
    """COMPREPLY for the command line `words` (the last one is being completed), in bash."""
    quoted = " ".join(f"'{word}'" for word in words)
    probe = (
        f"source {shell_script}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        "_llmd_rollout\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", probe],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return done.stdout.split()


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "llmd-rollout.bash"
    path.write_text(script("bash"))
    return path


def test_bash_completes_verbs_actions_flags_and_output_formats(bash_script: Path) -> None:
    assert complete(bash_script, "llmd-rollout", "sta") == ["status"]
    assert set(complete(bash_script, "llmd-rollout", "s")) == {"status", "schedule", "set-image"}
    assert complete(bash_script, "llmd-rollout", "schedule", "unp") == ["unpause"]
    assert complete(bash_script, "llmd-rollout", "status", "--wa") == ["--watch"]
    assert complete(bash_script, "llmd-rollout", "teardown", "--include-g") == [
        "--include-gateway-provider"
    ]
    assert complete(bash_script, "llmd-rollout", "list", "-o", "y") == ["yaml"]


def test_zsh_script_loads_bash_completion_and_registers_the_same_function() -> None:
    text = script("zsh")

    assert text.splitlines()[1] == "autoload -U +X bashcompinit && bashcompinit"
    assert "complete -o default -F _llmd_rollout llmd-rollout" in text
    if shutil.which("zsh"):
        subprocess.run(["zsh", "-n", "-c", text], check=True, timeout=30)
