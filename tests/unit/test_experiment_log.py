"""Experiments over a real prediction log: state, refusals, units, CUPED, ratios, old logs."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest
from sqlalchemy import create_engine

from keel.errors import KeelInputError
from keel.evaluation._experiments import decide
from keel.monitoring._experiment_page import render_experiment_page
from keel.monitoring._experiments import (
    analyze,
    check_settings,
    end_experiment,
    get_experiment,
    list_experiments,
    read_experiment,
    start_experiment,
    status,
    timeline,
    unit_table,
)
from keel.monitoring._logdb import OUTCOMES
from keel.serving._http import new_request_id
from keel.serving._log import PredictionLog, read_log

SETTINGS = {"metrics": ["conversion"], "guardrails": {"latency_ms": 5.0}, "alpha": 0.05}


def test_start_refuses_bad_input_and_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    first = start_experiment(url, "ab1", "m", "1", "2", 50, "user_id", SETTINGS)
    assert first.status == "running" and first.salt.startswith("ab1:")
    for args, message in (
        (("ab2", "m", "1", "3", 50), "already running"),
        (("ab1", "other", "1", "2", 50), "already exists"),
        (("ab3", "other", "1", "2", 0), "1..99"),
        (("ab3", "other", "1", "2", 99.5), "1..99"),
        (("../x", "other", "1", "2", 50), "experiment name"),
        (("ab3", "other", "2", "2", 50), "the champion itself"),
    ):
        with pytest.raises(KeelInputError, match=message):
            start_experiment(url, *args, "user_id", SETTINGS)  # type: ignore[arg-type]
    assert [e.name for e in list_experiments(url)] == ["ab1"]
    with pytest.raises(KeelInputError, match="known: ab1"):
        get_experiment(url, "nope")
    assert end_experiment(url, "ab1").status == "stopped"
    with pytest.raises(KeelInputError, match="is stopped"):
        end_experiment(url, "ab1")
    # a stopped experiment frees the model for the next one
    assert start_experiment(url, "ab2", "m", "1", "3", 50, "user_id", SETTINGS).status == "running"
    for settings, message in (
        ({"metrics": []}, "at least one"),
        ({"metrics": ["bad name"]}, "letters"),
        ({"metrics": ["accuracy"]}, "does not exist for a model whose answers are numbers"),
        ({"metrics": ["hit_rate"]}, "does not exist for a model whose answers are numbers"),
        ({"metrics": ["x"], "guardrails": {"latency_ms": -1}}, "margin"),
        ({"metrics": ["x"], "alpha": 0.7}, "alpha"),
    ):
        with pytest.raises(KeelInputError, match=message):
            check_settings(settings, "regression")


def _simulate(
    url: str, units: int, rates: tuple[float, float], seed: int = 0, revenue: bool = False
) -> None:
    """Answers, labels and outcomes of ``units`` units, as a server would log them."""
    rng = np.random.default_rng(seed)
    experiment = get_experiment(url, "ab")
    log = PredictionLog(url, flush_seconds=60)
    outcomes = []
    pre = []
    for i in range(units):
        unit = f"user-{i}"
        arm = experiment.arm_of(unit)
        version = "2" if arm == "challenger" else "1"
        for _ in range(1 + i % 3):
            request_id = new_request_id()
            label = int(rng.random() < 0.3)
            correct = rng.random() < (0.85 if arm == "challenger" else 0.8)
            log.record(
                request_id,
                {"name": "m", "version": version},
                [{"x": i}],
                [label if correct else 1 - label],
                [0.5],
                float(rng.normal(10, 1)),
                "challenger" if arm == "challenger" else "champion",
                ("ab", arm, unit),
            )
            log.feedback(request_id, [label])
        rate = rates[1] if arm == "challenger" else rates[0]
        if rng.random() < rate:
            outcomes.append({"unit": unit, "metric": "conversion", "value": 1})
        if revenue:
            spend = float(rng.gamma(2.0, 20.0))  # the unit's habit: before and during
            pre.append({"unit": unit, "metric": "revenue", "value": spend})
            lift = 2.0 if arm == "challenger" else 0.0
            during = spend + lift + float(rng.normal(0, 5))
            outcomes.append({"unit": unit, "metric": "revenue", "value": during})
    log.outcomes(outcomes)
    log.close()
    if pre:  # the pre-period: outcomes before the experiment started
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                OUTCOMES.insert(),
                [{**row, "time": experiment.started - 86_400, "source": "client"} for row in pre],
            )
        engine.dispose()


def test_a_known_effect_is_detected_with_accuracy_and_cuped(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    settings = {
        "metrics": ["conversion", "revenue"],
        "guardrails": {"latency_ms": 1.0, "accuracy": 0.02, "error_rate": 0.01},
        "alpha": 0.05,
        "planned_per_arm": 1500,
        "task_family": "classification",
    }
    start_experiment(url, "ab", "m", "1", "2", 50, "user_id", settings, salt="ab:fixed")
    _simulate(url, 4000, (0.10, 0.15), revenue=True)
    logged = read_experiment(url, "ab")
    found = analyze(logged)
    assert found["decision"] == "ship", found["reason"]
    effects = {e["metric"]: e for e in found["effects"]}
    assert effects["conversion"]["test"] == "two-proportion z (pooled)"
    assert effects["conversion"]["low"] < 0.05 < effects["conversion"]["high"]
    assert effects["accuracy"]["test"] == "ratio z (delta method)"
    assert effects["accuracy"]["low"] < 0.05 < effects["accuracy"]["high"]
    assert effects["error_rate"]["control"] == 0.0
    # CUPED on revenue: the pre-period explains most of the variance
    assert effects["revenue"]["cuped_theta"] == pytest.approx(1.0, abs=0.1)
    table = unit_table(logged)
    plain = decide(table, ["revenue"], planned_per_arm=1500).effects[0]
    width = effects["revenue"]["high"] - effects["revenue"]["low"]
    assert width < 0.5 * (plain["high"] - plain["low"])
    assert found["counts"]["units"]["champion"] + found["counts"]["units"]["challenger"] == 4000
    assert found["counts"]["progress"] >= 1.0
    shown = status(logged)
    assert shown["counts"]["requests"]["champion"] > shown["counts"]["units"]["champion"]
    points = timeline(logged)
    assert points and points[-1]["effects"]["conversion"]["absolute"] == pytest.approx(
        effects["conversion"]["absolute"]
    )
    page = render_experiment_page(found, points)
    assert "SHIP" in page and "conversion" in page


def test_no_data_too_few_units_and_an_a_a_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    start_experiment(url, "ab", "m", "1", "2", 50, "user_id", SETTINGS)
    with pytest.raises(KeelInputError, match="at least 2 in each arm"):
        analyze(read_experiment(url, "ab"))
    _simulate(url, 600, (0.0, 0.0), seed=3)
    with pytest.raises(KeelInputError, match="'conversion' has no data"):
        analyze(read_experiment(url, "ab"))
    end_experiment(url, "ab")
    start_experiment(url, "aa", "m", "1", "3", 50, "user_id", SETTINGS)
    # the same units under the next experiment: reshuffled by the new salt
    first = get_experiment(url, "ab")
    second = get_experiment(url, "aa")
    agree = np.mean([first.arm_of(f"u{i}") == second.arm_of(f"u{i}") for i in range(2000)])
    assert 0.45 < agree < 0.55


def test_a_log_written_before_experiments_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE predictions (request_id VARCHAR(64), row INTEGER, time FLOAT,"
            " model_name VARCHAR(200), model_version VARCHAR(20), inputs TEXT,"
            " prediction TEXT, score FLOAT, latency_ms FLOAT, route VARCHAR(20),"
            " PRIMARY KEY (request_id, row, route))"
        )
        conn.execute(
            "CREATE TABLE feedback (request_id VARCHAR(64), row INTEGER, label TEXT,"
            " time FLOAT, PRIMARY KEY (request_id, row))"
        )
        conn.execute(
            "INSERT INTO predictions VALUES ('aa', 0, ?, 'm', '1', '{}', '1', 0.5, 1.0,"
            " 'champion')",
            (time.time(),),
        )
    url = f"sqlite:///{path}"
    assert read_log(url)[0]["request_id"] == "aa"  # read as it is, without the new columns
    log = PredictionLog(url)
    log.record(
        "bb",
        {"name": "m", "version": "1"},
        [{}],
        [1],
        [0.5],
        1.0,
        "champion",
        ("e", "champion", "u"),
    )
    log.close()
    rows = read_log(url)
    assert [r["request_id"] for r in rows] == ["aa", "bb"]
    assert rows[0]["arm"] is None and rows[1]["arm"] == "champion" and rows[1]["unit"] == "u"


def test_the_commands_read_a_log_given_by_path_without_a_project(tmp_path):
    from tests.conftest import keel_in

    url = f"sqlite:///{tmp_path / 'log.db'}"
    start_experiment(url, "e1", "m", "1", "2", 50, "user_id", SETTINGS)
    log = str(tmp_path / "log.db")
    shown = keel_in(tmp_path, "experiment", "status", "e1", "--log", log, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["counts"]["units"] == {"champion": 0, "challenger": 0}
    listed = keel_in(tmp_path, "experiment", "list", "--log", log, "--json")
    assert [e["name"] for e in json.loads(listed.stdout)["experiments"]] == ["e1"]
    empty = keel_in(tmp_path, "experiment", "analyze", "e1", "--log", log)
    assert empty.exit_code == 2 and "at least 2 in each arm" in empty.output
    missing = keel_in(tmp_path, "experiment", "status", "e1", "--log", str(tmp_path / "no.db"))
    assert missing.exit_code == 2 and "no prediction log" in missing.output
    assert keel_in(tmp_path, "experiment", "stop", "e1", "--log", log).exit_code == 0
    no_project = keel_in(tmp_path, "experiment", "conclude", "e1", "--log", log)
    assert no_project.exit_code == 2 and "keel.yaml" in no_project.output
