"""What machine and checkout a measurement was made on: the processor's name and the git commit.

Used by the execution report page (:mod:`jacnb.book`), the dry run of a profile
(:mod:`jacnb.lab.dryrun`, the "What the ``paper`` profile costs" page) and ``make gpu-check``
(``scripts/gpu_check.py``), so that every page states its hardware and commit the same way.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

__all__ = ["processor", "git_commit"]

_REPO = Path(__file__).resolve().parents[2]


def processor() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name
            )
    except OSError:
        return name


def git_commit(root: Path = _REPO, *, mark_dirty: bool = False) -> str:
    """The checkout's short commit, ``"unknown"`` outside a git checkout; with ``mark_dirty`` a
    ``+`` is appended when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = mark_dirty and bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")
