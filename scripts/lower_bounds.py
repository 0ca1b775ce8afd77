"""Check that each runtime dependency is installed at exactly its declared lower bound.

    .venv-lowest/bin/python scripts/lower_bounds.py

``make test-lowest`` installs Keel with uv's ``--resolution lowest-direct`` and runs the
fast suite there. That proves a lower bound only if the bound is what got installed: when
another requirement lifts a dependency above Keel's bound (fastapi needing a newer
pydantic, say), the bound was never tested. This script lists every dependency of
``[project].dependencies`` and of the family extras whose installed version differs
from its lower bound, and exits 1 if there is one (raise the bound to what is tested).
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# the extras make test-lowest installs and tests; dvc, postgres and ray are integrations
# whose tests need services, checked at their pinned versions in make test
TESTED_EXTRAS = ("recommend", "rag", "experiments")


def lower_bound(requirement: Requirement) -> Version | None:
    """The ``>=`` version of a requirement, if it has one."""
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def main() -> int:
    """Compare the installed versions with the declared lower bounds."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in TESTED_EXTRAS:
        lines += project["optional-dependencies"][extra]
    wrong, checked = [], 0
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        bound = lower_bound(requirement)
        if bound is None:
            wrong.append(f"{requirement.name}: no lower bound (write >=VERSION)")
            continue
        try:
            installed = Version(version(requirement.name))
        except PackageNotFoundError:
            wrong.append(f"{requirement.name}: not installed")
            continue
        checked += 1
        if installed != bound:
            wrong.append(
                f"{requirement.name}: declared >={bound}, installed {installed}: the bound"
                f" is not what was tested (another requirement lifts it?); declare"
                f" >={installed}"
            )
    for line in wrong:
        print(f"error: {line}", file=sys.stderr)
    if wrong:
        return 1
    print(f"{checked} dependencies installed at exactly their lower bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
