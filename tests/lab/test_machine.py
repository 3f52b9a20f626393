"""jacnb.lab.machine: the commit and processor that the execution report and the dry run name."""

from __future__ import annotations

import subprocess
from pathlib import Path

from jacnb.lab import machine


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_git_commit_names_head_and_marks_a_changed_tree(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("a")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = _git(tmp_path, "rev-parse", "HEAD")
    commit = machine.git_commit(tmp_path, mark_dirty=True)
    assert head.startswith(commit) and len(commit) >= 7
    (tmp_path / "f").write_text("b")
    assert machine.git_commit(tmp_path, mark_dirty=True) == commit + "+"
    assert machine.git_commit(tmp_path) == commit  # unmarked unless asked


def test_git_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert machine.git_commit(tmp_path) == "unknown"


def test_processor_is_a_name() -> None:
    assert machine.processor().strip()
