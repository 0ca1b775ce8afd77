"""Bootstrap intervals and the baseline gate; fast metrics equal scikit-learn's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.evaluation import Interval, baseline_gate, metric_intervals, paired_difference
from keel.families.tabular.task import BINARY
from keel.tasks import compute_metrics, fast_metrics


def _binary(seed: int, n: int = 300):
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.3, "yes", "no")
    score = np.clip(rng.random(n) * 0.6 + (y == "yes") * 0.35, 0, 1).round(2)  # ties on purpose
    proba = np.c_[1 - score, score]
    pred = np.where(score > 0.5, "yes", "no")
    return y, pred, proba


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_binary_metrics_equal_sklearn(seed: int) -> None:
    y, pred, proba = _binary(seed)
    slow = compute_metrics("binary", y, pred, proba, ("no", "yes"), "yes")
    fast = fast_metrics("binary", y, pred, proba, ("no", "yes"), "yes")
    assert slow.keys() == fast.keys()
    for name in slow:
        assert fast[name] == pytest.approx(slow[name], abs=1e-9), name


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_multiclass_and_regression_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ("a", "b", "c")
    y = rng.choice(classes, 200)
    proba = rng.dirichlet([1, 1, 1], 200)
    pred = np.array(classes)[proba.argmax(axis=1)]
    slow = compute_metrics("multiclass", y, pred, proba, classes)
    fast = fast_metrics("multiclass", y, pred, proba, classes)
    assert slow.keys() == fast.keys()
    for name in slow:
        assert fast[name] == pytest.approx(slow[name], abs=1e-9), name
    truth, guess = rng.normal(size=100), rng.normal(size=100)
    slow = compute_metrics("regression", truth, guess)
    fast = fast_metrics("regression", truth, guess)
    for name in slow:
        assert fast[name] == pytest.approx(slow[name], abs=1e-9), name


def test_fast_metrics_on_real_adult_predictions(adult_frame: pd.DataFrame) -> None:
    from keel.data import infer_schema, prepare_labels, split_frame
    from keel.families.tabular.training import predict_with, train_candidates

    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    splits = split_frame(frame, "income", "binary", seed=0)
    model = train_candidates(["linear"], splits, schema, labels, 0)[0].pipeline
    pred, proba, classes = predict_with(model, splits.test[schema.feature_names], "binary")
    y = splits.test["income"].to_numpy()
    slow = compute_metrics("binary", y, pred, proba, classes, ">50K")
    fast = fast_metrics("binary", y, pred, proba, classes, ">50K")
    for name in slow:
        assert fast[name] == pytest.approx(slow[name], abs=1e-9), name


def test_intervals_contain_the_point_and_shrink_with_more_rows() -> None:
    small = metric_intervals(BINARY.metrics, *_binary(0, 200), ("no", "yes"), "yes", resamples=200)
    large = metric_intervals(BINARY.metrics, *_binary(0, 5000), ("no", "yes"), "yes", resamples=200)
    for name, interval in small.items():
        assert interval.low <= interval.value <= interval.high, name
    width = lambda i: i.high - i.low  # noqa: E731
    assert width(large["roc_auc"]) < width(small["roc_auc"]) / 2


def test_intervals_are_seeded() -> None:
    a = metric_intervals(BINARY.metrics, *_binary(3), ("no", "yes"), "yes", resamples=100, seed=7)
    b = metric_intervals(BINARY.metrics, *_binary(3), ("no", "yes"), "yes", resamples=100, seed=7)
    assert a == b


def test_paired_difference_and_gate() -> None:
    y, pred, proba = _binary(0, 1000)
    good = proba[:, 1]
    noisy = np.clip(good + np.random.default_rng(1).normal(0, 0.3, len(good)), 0, 1)
    truth = y == "yes"

    def auc(score):
        return lambda rows: fast_metrics(
            "binary", y[rows], pred[rows], np.c_[1 - score[rows], score[rows]], ("no", "yes"), "yes"
        )["roc_auc"]

    diff = paired_difference(auc(good), auc(noisy), len(truth), resamples=200)
    assert diff.low > 0
    assert baseline_gate("roc_auc", True, "m", "b", diff, 0.0).passed
    assert not baseline_gate("roc_auc", True, "m", "b", diff, diff.high).passed
    same = paired_difference(auc(good), auc(good), len(truth), resamples=50)
    assert same.value == 0 and not baseline_gate("roc_auc", True, "m", "b", same, 0.0).passed
    lower = Interval(-2.0, -3.0, -1.0)  # rmse: the model's error is lower: a pass
    result = baseline_gate("rmse", False, "m", "b", lower, 0.5)
    assert result.passed and "passed" in result.describe()


def test_string_labels_resample_as_codes_with_the_same_intervals() -> None:
    from keel.evaluation import encode_labels, metric_intervals
    from keel.tasks import get_task

    rng = np.random.default_rng(3)
    truth = rng.choice(["<=50K", ">50K"], 400)
    guess = np.where(rng.random(400) < 0.8, truth, rng.choice(["<=50K", ">50K"], 400))
    p = np.clip((guess == ">50K") * 0.7 + rng.random(400) * 0.3, 0, 1)
    proba = np.column_stack([1 - p, p])
    metrics = get_task("binary").metrics
    as_strings = metric_intervals(metrics, truth, guess, proba, ["<=50K", ">50K"], ">50K")
    codes = encode_labels(truth, guess, ["<=50K", ">50K"], ">50K")
    assert codes[2] == [0, 1] and codes[3] == 1 and set(codes[0]) == {0, 1}
    as_codes = metric_intervals(metrics, codes[0], codes[1], proba, codes[2], codes[3])
    for name, interval in as_strings.items():
        assert interval.low == pytest.approx(as_codes[name].low, abs=1e-12)
        assert interval.high == pytest.approx(as_codes[name].high, abs=1e-12)
    numbers = np.array([1.0, 2.0])
    assert encode_labels(numbers, numbers, [], None)[0] is numbers  # numbers: unchanged
