"""Asking git which commit a folder is at: one place, used by lineage and run tracking."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit_of(folder: Path, rev: str | None = None, mark_dirty: bool = False) -> str | None:
    """The commit ``rev`` (default ``HEAD``) names in the git work tree holding ``folder``.

    With ``mark_dirty``, ``+dirty`` is appended when tracked files have uncommitted
    changes. ``None`` outside a git work tree or when git is missing.
    """
    commit = _git(folder, "rev-parse", rev or "HEAD")
    if not commit or not mark_dirty:
        return commit
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if status else "")
