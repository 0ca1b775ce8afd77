"""Robustness tests and surrogate rules on models whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from keel.config import RobustnessConfig
from keel.data import ColumnSchema, Schema
from keel.families.tabular.responsible import assess_robustness, surrogate_rules


class _Labels:
    def __init__(self, task: str, positive: str | None = None) -> None:
        self.task, self.positive_class = task, positive


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(0.0, 1.0, rows),
            "noise": rng.normal(0.0, 1.0, rows),
            "colour": rng.choice(["red", "blue"], rows),
        }
    )


def _schema() -> Schema:
    return Schema(
        columns=(
            ColumnSchema("x", "float", False),
            ColumnSchema("noise", "float", False),
            ColumnSchema("colour", "string", False),
            ColumnSchema("y", "string", False, role="target"),
        ),
        target="y",
    )


def _classifier(train: pd.DataFrame) -> Pipeline:
    """Decides ``x > 0`` exactly: one split on x, colour and noise ignored."""
    encode = ColumnTransformer(
        [("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"])], remainder="passthrough"
    )
    model = Pipeline([("prep", encode), ("model", DecisionTreeClassifier(max_depth=1))])
    return model.fit(train[["x", "noise", "colour"]], np.where(train["x"] > 0, "yes", "no"))


def test_the_search_finds_the_one_feature_that_decides_and_its_distance() -> None:
    train, test = _frame(2000), _frame(400, seed=1)
    model = _classifier(train)
    config = RobustnessConfig(rows=400, search_rows=200, budget=0.5, max_flipped_within_budget=0.1)
    found = assess_robustness(model, test, train, _schema(), _Labels("binary", "yes"), 0.5, config)
    change = found["minimal_change"]
    # rows within 0.5 sd of the threshold flip within the budget, by moving x, and no others
    near = float((test["x"].head(200).abs() <= 0.5 * train["x"].std()).mean())
    assert change["flipped_within_budget"] == pytest.approx(near, abs=0.03)
    assert {e["feature"] for e in change["examples"]} == {"x"}
    # colour and noise do not matter; a missing x goes to one side of the split
    assert found["category_swaps"]["colour"] == 0.0 and found["missing"]["noise"] == 0.0
    rates = [p["flip_rate"] for p in found["noise_curve"]]
    assert rates == sorted(rates) and rates[-1] > rates[0] > 0.0
    assert not found["passed"] and found["verdict"] == "failed"
    assert "flip with one feature changed by at most 0.5 sd" in found["summary"][1]


def test_a_limit_left_unset_is_reported_not_judged() -> None:
    train, test = _frame(500), _frame(200, seed=2)
    found = assess_robustness(
        _classifier(train),
        test,
        train,
        _schema(),
        _Labels("binary", "yes"),
        0.5,
        RobustnessConfig(rows=200, search_rows=20),
    )
    assert found["judged"] is False and found["passed"] and found["verdict"].startswith("not")


def test_regression_flips_are_moves_beyond_a_quarter_sd() -> None:
    train, test = _frame(500), _frame(200, seed=3)
    columns = ["x", "noise"]
    model = LinearRegression().fit(train[columns], 3 * train["x"])
    schema = Schema(
        columns=(
            ColumnSchema("x", "float", False),
            ColumnSchema("noise", "float", False),
            ColumnSchema("y", "float", False, role="target"),
        ),
        target="y",
    )
    found = assess_robustness(
        model,
        test,
        train,
        schema,
        _Labels("regression"),
        None,
        RobustnessConfig(rows=200, search_rows=50, budget=0.5),
    )
    # moving x by 0.25 sd moves the prediction by a quarter of its spread: the edge
    assert found["minimal_change"]["flipped_within_budget"] == 1.0
    assert {e["feature"] for e in found["minimal_change"]["examples"]} == {"x"}


def test_rules_mimic_a_model_they_can_express_exactly() -> None:
    train, test = _frame(2000), _frame(500, seed=4)
    rules = surrogate_rules(
        _classifier(train), test, train, _schema(), _Labels("binary", "yes"), 0.5
    )
    assert rules["fidelity"] == 1.0
    assert "x <=" in rules["text"] and "class: yes" in rules["text"]
    assert "colour" not in rules["text"]


def test_a_slow_model_is_searched_on_the_rows_that_fit_in_the_time_and_says_so() -> None:
    import keel.families.tabular.responsible._robustness as robustness

    rows = pd.DataFrame({"x": np.linspace(0, 1, 40)})
    train = pd.DataFrame({"x": np.linspace(0, 1, 200)})

    class Slow:
        positive = "y"

        def __call__(self, frame: pd.DataFrame) -> np.ndarray:
            import time

            time.sleep(0.02)
            return np.where(frame["x"].to_numpy() > 0.5, "y", "n")

        def flipped(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
            return before != after

    spreads = robustness._spreads(train, ["x"])
    found = robustness.minimal_changes(Slow(), rows, train, spreads, set(), seconds=0.1)
    assert robustness.PROBE_ROWS <= len(found) < len(rows)  # bounded, never below the probe
    assert len(robustness.minimal_changes(Slow(), rows, train, spreads, set(), seconds=60)) == 40
