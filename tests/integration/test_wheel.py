"""The wheel holds every file Keel needs and says what it is: name, ranges, extras.

Built from this tree with ``pip wheel`` (no network, the environment's setuptools): a
template, data file or plug-in module missing from the wheel would break a user's
``pip install`` while every test of the editable install still passed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from keel._version import __version__

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    tree, out = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", tree / "src", ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tree / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(tree)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("keel_ml-*.whl")
    return found


def test_every_file_of_the_package_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    source = ROOT / "src"
    files = [
        p.relative_to(source).as_posix()
        for p in (source / "keel").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    assert "keel/families/retrieval/data_files/attacks.jsonl" in files
    assert [f for f in files if f not in names] == []


def test_the_wheel_names_keel_ml_with_ranges_and_extras(wheel: Path) -> None:
    assert wheel.name == f"keel_ml-{__version__}-py3-none-any.whl"
    archive = zipfile.ZipFile(wheel)
    (meta_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    meta = Parser().parsestr(archive.read(meta_name).decode())
    assert meta["Name"] == "keel-ml" and meta["Version"] == __version__
    extras = set(meta.get_all("Provides-Extra"))
    assert {"recommend", "rag", "dvc", "postgres", "ray", "all"} <= extras
    core = [Requirement(r) for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert core, "no runtime dependencies"
    for requirement in core:
        operators = {s.operator for s in requirement.specifier}
        assert operators == {">=", "<"}, f"{requirement}: a range, not a pin"
    entry = archive.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "keel = keel.cli:main" in entry
    # the licence travels with the wheel, named by its SPDX expression
    assert meta["License-Expression"] == "Apache-2.0"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in archive.namelist())


def test_the_version_has_one_source_and_a_changelog_section() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"\n## [{__version__}]" in changelog, "CHANGELOG.md needs a section per release"
