"""The release process holds: one version, a changelog section, trusted publishing."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def release_root(tmp_path: Path) -> Path:
    (tmp_path / "src/keel").mkdir(parents=True)
    shutil.copy(ROOT / "src/keel/_version.py", tmp_path / "src/keel/_version.py")
    return tmp_path


def test_a_matching_tag_with_a_dated_section_may_be_released(release_root: Path) -> None:
    check = _script("release_check")
    version = check.version_in_file(release_root / "src/keel/_version.py")
    (release_root / "CHANGELOG.md").write_text(f"# Changelog\n\n## [{version}] - 2026-12-07\n")
    assert check.problems(f"v{version}", release_root) == []


def test_a_wrong_tag_or_an_undated_section_is_refused(release_root: Path) -> None:
    check = _script("release_check")
    version = check.version_in_file(release_root / "src/keel/_version.py")
    (release_root / "CHANGELOG.md").write_text(f"## [{version}] - unreleased\n")
    found = check.problems("v99.0.0", release_root)
    assert len(found) == 2
    assert "does not match src/keel/_version.py" in found[0]
    assert f"no dated section for {version}" in found[1]


def test_the_version_file_is_the_one_the_package_reports() -> None:
    from keel import __version__

    assert _script("release_check").version_in_file() == __version__


def _workflow(name: str) -> dict:
    return yaml.safe_load((ROOT / ".github/workflows" / name).read_text())


def test_release_publishes_on_a_version_tag_with_trusted_publishing_only() -> None:
    release = _workflow("release.yml")
    assert release[True]["push"]["tags"] == ["v*"]  # PyYAML reads `on` as True
    jobs = release["jobs"]
    publish = jobs["publish"]
    assert set(publish["needs"]) == {"build", "test", "test-wheel"}
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    (step,) = [s for s in publish["steps"] if "gh-action-pypi-publish" in s.get("uses", "")]
    assert "with" not in step, "no password or token: PyPI trusts the workflow (OIDC)"
    text = (ROOT / ".github/workflows/release.yml").read_text()
    assert "secrets." not in text
    assert release["permissions"] == {"contents": "read"}  # the rest of the jobs: read-only
    first = jobs["check-tag"]["steps"][-1]["run"]
    assert "scripts/release_check.py" in first


def test_workflows_and_ci_call_only_targets_and_scripts_that_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    texts = [p.read_text() for p in (ROOT / ".github/workflows").glob("*.yml")]
    texts.append((ROOT / ".ci/run").read_text())
    called = {t for text in texts for t in re.findall(r"\bmake ([a-z][a-z-]*)", text)}
    assert {"test", "check-dist", "test-lowest"} <= called
    assert called <= targets, called - targets
    scripts = {s for text in texts for s in re.findall(r"(scripts/[a-z_]+\.py)", text)}
    assert scripts and all((ROOT / s).is_file() for s in scripts)
    ci = (ROOT / ".ci/run").read_text()
    assert ci.index("make test\n") < ci.index("make check-dist") < ci.index("make test-lowest")
