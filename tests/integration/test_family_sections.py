"""A plug-in family's own keel.yaml section: validated by the family, recorded, read by
its stages (the out-of-tree ``constant`` family's ``constant: {statistic: ...}``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from keel.config import parse_config
from keel.errors import ConfigError
from keel.pipeline._package_stages import config_digest
from tests.conftest import keel_in

pytestmark = pytest.mark.integration

BASE = {"name": "c", "data": "data.csv", "target": "y", "task": "constant"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"constant": {"statistc": "x"}},
            "unknown key 'constant.statistc'; allowed keys: statistic",
        ),
        ({"constant": {"statistic": "mode"}}, "key 'constant.statistic': .*, got 'mode'"),
        ({"constant": "median"}, "key 'constant': Input should be a valid dictionary"),
        ({"family_section": {}}, "unknown key 'family_section'"),
    ],
)
def test_a_bad_section_is_refused_naming_the_key(extra, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, **extra})


def test_another_familys_section_names_its_task():
    untasked = {k: v for k, v in BASE.items() if k != "task"}
    with pytest.raises(ConfigError, match="'constant' is for task: constant; set task: constant"):
        parse_config({**untasked, "constant": {"statistic": "median"}})


def test_the_section_has_defaults_a_digest_and_round_trips():
    plain, median = parse_config(BASE), parse_config({**BASE, "constant": {"statistic": "median"}})
    assert plain.section.statistic == "mean" and median.section.statistic == "median"
    assert config_digest(plain) != config_digest(median)
    written = yaml.safe_dump(median.model_dump(mode="json", by_alias=True))
    assert "family_section" not in written and "constant:" in written
    assert parse_config(yaml.safe_load(written)) == median
    assert parse_config({"name": "t", "data": "d.csv", "target": "y"}).section is None


def test_the_stage_reads_the_section_and_reruns_when_it_changes(tmp_path: Path):
    values = [float(i % 7) ** 2 for i in range(100)]
    pd.DataFrame({"x": range(100), "y": values}).to_csv(tmp_path / "data.csv", index=False)
    config = {**BASE, "constant": {"statistic": "median"}}
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(config))
    first = keel_in(tmp_path, "run", "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["metrics"]["mae"] == pytest.approx(
        float(np.mean(np.abs(np.array(values[80:]) - np.median(values[:80]))))
    )
    (tmp_path / "keel.yaml").write_text(
        yaml.safe_dump({**config, "constant": {"statistic": "mean"}})
    )
    second = json.loads(keel_in(tmp_path, "run", "--json").stdout)
    statuses = {s["name"]: s["status"] for s in second["stages"]}
    assert statuses["ingest"] != "ran" and statuses["train"] == "ran", statuses
    assert second["model"]["version"] != doc["model"]["version"]
    assert second["metrics"]["mae"] == pytest.approx(
        float(np.mean(np.abs(np.array(values[80:]) - np.mean(values[:80]))))
    )
