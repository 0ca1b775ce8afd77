"""Refuse a release tag that does not match Keel's one version or its changelog.

    python scripts/release_check.py v0.1.0

A release is the tag ``v<version>`` where ``<version>`` is ``__version__`` in
``src/keel/_version.py`` (the one source: the wheel's metadata, ``keel --version`` and
every run record read it), and ``CHANGELOG.md`` has a dated section for it
(``## [0.1.0] - 2026-12-07``). The release workflow runs this first; exit 0 when the tag
may be released, 1 with the reason otherwise.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def version_in_file(path: Path = ROOT / "src/keel/_version.py") -> str:
    """``__version__`` of the file, read without importing Keel."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__version__"]:
            return ast.literal_eval(node.value)
    raise SystemExit(f"error: {path}: no __version__ = '...'")


def problems(tag: str, root: Path = ROOT) -> list[str]:
    """Why ``tag`` may not be released from ``root``; empty when it may."""
    version = version_in_file(root / "src/keel/_version.py")
    found = []
    if tag != f"v{version}":
        found.append(
            f"tag {tag!r} does not match src/keel/_version.py ({version!r}): tag v{version},"
            " or change the file in a commit first"
        )
    changelog = (root / "CHANGELOG.md").read_text()
    dated = re.search(
        rf"^## \[{re.escape(version)}\] - (\d{{4}}-\d{{2}}-\d{{2}})$", changelog, re.M
    )
    if not dated:
        found.append(
            f"CHANGELOG.md has no dated section for {version}: write"
            f" '## [{version}] - YYYY-MM-DD' with what changed"
        )
    return found


def main() -> int:
    """Check the tag given on the command line."""
    if len(sys.argv) != 2:
        print("usage: release_check.py TAG (for example v0.1.0)", file=sys.stderr)
        return 2
    found = problems(sys.argv[1])
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if not found:
        print(f"{sys.argv[1]} may be released")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
