"""A family or integration whose extra is missing: exit 2 with the exact install line.

The modules are made to look absent (``importlib.util.find_spec`` answers ``None`` for
them): this machine has every extra installed, so the absence is faked here; the
message and the exit code are Keel's real ones.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from keel.config import parse_config
from keel.errors import ConfigError
from keel.families import FAMILIES
from tests.conftest import keel_in

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def without(monkeypatch):
    """Make the named top-level modules look not installed."""

    def hide(*names: str) -> None:
        real = importlib.util.find_spec

        def find_spec(name, *args, **kwargs):
            return None if name.split(".")[0] in names else real(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return hide


def test_a_recommender_config_without_its_extra_names_the_install_line(without):
    without("implicit")
    config = {"name": "r", "data": "x.csv", "task": "recommendation"}
    config |= {"user_column": "u", "item_column": "i", "time_column": "t"}
    with pytest.raises(ConfigError) as found:
        parse_config(config)
    assert 'pip install "keel-ml[recommend]"' in str(found.value)
    assert "implicit not installed" in str(found.value)


def test_keel_run_of_a_retrieval_project_without_its_extra_is_exit_2(tmp_path, without):
    without("bm25s", "faiss")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\ntext\n")
    (tmp_path / "q.jsonl").write_text('{"query": "a", "relevant": ["a.md"]}\n')
    (tmp_path / "keel.yaml").write_text(
        "name: docs\ndata: docs\ntask: retrieval\nqueries: q.jsonl\n"
    )
    done = keel_in(tmp_path, "run")
    assert done.exit_code == 2, done.output
    assert 'pip install "keel-ml[rag]"' in done.output and "Traceback" not in done.output
    assert "bm25s, faiss not installed" in done.output


def test_installed_families_need_nothing_more_here():
    assert {name: FAMILIES[name].missing_extra() for name in FAMILIES} == dict.fromkeys(FAMILIES)


def test_every_family_extra_is_declared_and_all_holds_every_extra():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = meta["optional-dependencies"]
    for family in FAMILIES.values():
        if family.requires:
            assert family.extra in extras, family.name
    everything = extras["all"][0]
    named = everything[everything.index("[") + 1 : everything.index("]")].split(",")
    assert set(named) == set(extras) - {"all", "dev"}
    assert meta["name"] == "keel-ml"
    pinned = [d for d in meta["dependencies"] if "==" in d]
    assert pinned == [], f"pins belong in constraints.txt, ranges in the metadata: {pinned}"


def test_serving_a_model_whose_family_lacks_its_extra_is_exit_2(monkeypatch, without):
    from keel.errors import KeelInputError
    from keel.registry import _pyfunc

    without("implicit")
    monkeypatch.setattr(
        _pyfunc,
        "package_metadata",
        lambda uri, tracking_uri: {"family": "recommendation", "task": "recommendation"},
    )
    with pytest.raises(KeelInputError, match=r'movies/3: .*pip install "keel-ml\[recommend\]"'):
        _pyfunc.package_family("movies/3", "sqlite:///unused.db")


def test_ab_tests_without_their_extra_name_the_install_line(without, tmp_path) -> None:
    from typer.testing import CliRunner

    from keel.cli import app
    from keel.errors import KeelInputError
    from keel.evaluation._experiments import design

    without("statsmodels")
    line = 'pip install "keel-ml[experiments]"'
    with pytest.raises(KeelInputError, match=r"\[experiments\] extra \(statsmodels not"):
        design("proportion", 0.1, 0.01)
    for argv in (
        ["experiment", "design", "--baseline", "0.1", "--mde", "0.01"],
        ["experiment", "list", "--log", str(tmp_path / "log.db")],
    ):
        done = CliRunner().invoke(app, argv)
        assert done.exit_code == 2, done.output
        assert line in done.output and "Traceback" not in done.output
    # --help still teaches without the extra
    assert CliRunner().invoke(app, ["experiment", "--help"]).exit_code == 0


def test_ab_tests_with_their_extra_need_nothing_more() -> None:
    from keel._extras import missing

    assert missing("experiments", "statsmodels") is None
