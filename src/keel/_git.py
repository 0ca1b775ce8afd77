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


def tag_release(folder: Path, tag: str, commit: str, message: str) -> tuple[bool, str]:
    """Create the annotated tag ``tag`` on ``commit`` in the work tree holding ``folder``.

    Returns ``(made, what happened)``. A tag that already names ``commit`` is kept
    (promoting again changes nothing); one that names another commit is not moved.
    """
    if _git(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return False, f"{folder} is not in a git work tree: no tag"
    existing = _git(folder, "rev-parse", f"refs/tags/{tag}^{{commit}}")
    if existing is not None:
        if existing == commit:
            return False, f"git tag {tag} already names {commit[:12]}"
        return False, f"git tag {tag} exists on another commit ({existing[:12]}): not moved"
    if _git(folder, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        return False, f"commit {commit[:12]} is not in this repository: no tag"
    made = _git(folder, "tag", "-a", tag, commit, "-m", message)
    if made is None:
        return False, f"git could not create tag {tag}"
    return True, f"tagged {commit[:12]} as {tag}"
