"""Metrics by task: known values on hand-made cases, honest gaps when undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keel.evaluation import is_better
from keel.tasks import compute_metrics, get_task


def test_binary_metrics_match_hand_computed_values() -> None:
    y = np.array(["no", "no", "yes", "yes"])
    pred = np.array(["no", "yes", "yes", "yes"])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = compute_metrics("binary", y, pred, proba, classes=("no", "yes"), positive_class="yes")
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["brier"] == pytest.approx(np.mean([0.01, 0.36, 0.09, 0.04]))


def test_positive_class_changes_precision_and_recall() -> None:
    y = np.array(["a", "a", "b", "b"])
    pred = np.array(["a", "b", "b", "b"])
    for_b = compute_metrics("binary", y, pred, positive_class="b")
    for_a = compute_metrics("binary", y, pred, positive_class="a")
    assert for_b["recall"] == pytest.approx(1.0) and for_a["recall"] == pytest.approx(0.5)


def test_undefined_metrics_are_left_out_not_invented() -> None:
    y = np.array(["yes", "yes"])
    proba = np.array([[0.2, 0.8], [0.1, 0.9]])
    m = compute_metrics("binary", y, y, proba, classes=("no", "yes"), positive_class="yes")
    assert "roc_auc" not in m and m["accuracy"] == 1.0


def test_multiclass_metrics() -> None:
    y = np.array(["a", "b", "c", "a"])
    proba = np.eye(3)[[0, 1, 2, 0]] * 0.97 + 0.01
    m = compute_metrics("multiclass", y, y, proba, classes=("a", "b", "c"))
    assert m["f1_macro"] == pytest.approx(1.0)
    assert m["roc_auc_ovr"] == pytest.approx(1.0)
    assert m["log_loss"] < 0.1


def test_regression_metrics() -> None:
    m = compute_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["median_ae"] == 0.0
    assert "r2" in m


def test_zero_rows_is_an_error() -> None:
    with pytest.raises(ValueError, match="zero rows"):
        compute_metrics("binary", [], [])


def test_is_better_respects_direction() -> None:
    rmse, auc = get_task("regression").primary(), get_task("binary").primary()
    assert rmse.greater_is_better is False
    assert is_better(rmse, 1.0, 2.0) and not is_better(rmse, 3.0, 2.0)
    assert is_better(auc, 0.9, 0.8) and not is_better(auc, 0.7, 0.8)
    assert is_better(auc, 0.1, None) and is_better(auc, 0.1, float("nan"))


def test_metric_spec_and_direction_cover_every_reported_metric() -> None:
    from keel.tasks import greater_is_better

    def metric_spec(task, name=None):
        return get_task(task).primary(name)

    known = {n: get_task(n).metrics.directions for n in ("binary", "multiclass", "regression")}
    assert metric_spec("binary").name == "roc_auc"
    assert metric_spec("regression", "r2").greater_is_better
    assert is_better(metric_spec("binary", "brier"), 0.1, 0.2)
    assert not greater_is_better("log_loss") and greater_is_better("f1_macro")
    with pytest.raises(ValueError, match="'rmse' is not one of f1_macro"):
        metric_spec("multiclass", "rmse")
    with pytest.raises(ValueError, match="unknown metric"):
        greater_is_better("speed")
    rng = np.random.default_rng(0)
    truth = rng.choice(["a", "b", "c"], 200)
    proba = rng.dirichlet([1, 1, 1], 200)
    reported = compute_metrics("multiclass", truth, truth, proba, ("a", "b", "c"))
    assert set(reported) == set(known["multiclass"])
    truth = rng.choice(["n", "y"], 200)
    proba = rng.dirichlet([1, 1], 200)
    reported = compute_metrics("binary", truth, truth, proba, ("n", "y"), "y")
    assert set(reported) == set(known["binary"])
    values = rng.normal(10, 1, 50)
    assert set(compute_metrics("regression", values, values + 0.1)) == set(known["regression"])
