"""Behaviour of the trained Adult model: it learns, it is deterministic, it is sensible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.data import infer_schema, prepare_labels, split_frame
from keel.families.tabular.training import evaluate_pipeline, train_candidates


@pytest.fixture(scope="module")
def trained(adult_frame: pd.DataFrame):
    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    splits = split_frame(frame, "income", labels.task, seed=11)
    models = {
        c.name: c for c in train_candidates(["dummy", "lightgbm"], splits, schema, labels, seed=11)
    }
    return models, splits, schema, labels


def test_model_beats_the_dummy_baseline_by_a_wide_margin(trained) -> None:
    models, splits, schema, labels = trained
    dummy = evaluate_pipeline(models["dummy"].pipeline, splits.test, schema, labels)
    model = evaluate_pipeline(models["lightgbm"].pipeline, splits.test, schema, labels)
    assert model["roc_auc"] - dummy["roc_auc"] > 0.3
    assert model["accuracy"] > dummy["accuracy"]


def test_same_seed_same_predictions(trained, adult_frame) -> None:
    models, splits, schema, labels = trained
    again = train_candidates(["lightgbm"], splits, schema, labels, seed=11)[0]
    x = splits.test[schema.feature_names]
    first = models["lightgbm"].pipeline.predict_proba(x)
    assert np.array_equal(first, again.pipeline.predict_proba(x))


def test_ignored_column_has_no_effect(trained) -> None:
    models, splits, schema, _ = trained
    x = splits.test.drop(columns=["income"])
    base = models["lightgbm"].pipeline.predict_proba(x[schema.feature_names])
    shifted = x.assign(fnlwgt=x["fnlwgt"] * 10)
    assert np.array_equal(base, models["lightgbm"].pipeline.predict_proba(shifted))


def test_large_capital_gain_raises_the_income_estimate(trained) -> None:
    models, splits, schema, labels = trained
    x = splits.test[schema.feature_names]
    column = list(labels.classes).index(labels.positive_class)
    before = models["lightgbm"].pipeline.predict_proba(x)[:, column]
    after = models["lightgbm"].pipeline.predict_proba(x.assign(**{"capital-gain": 50_000}))[
        :, column
    ]
    assert (after >= before - 1e-9).mean() > 0.9
    assert after.mean() > before.mean() + 0.2


def test_slices_flag_where_the_model_fails(trained) -> None:
    from keel.families.tabular.training import predict_with, slice_report, worst_rows

    models, splits, schema, labels = trained
    model = models["lightgbm"].pipeline
    pred, proba, classes = predict_with(model, splits.test[schema.feature_names], "binary")
    report = slice_report(splits.test, pred, proba, classes, schema, labels, sensitive=["age"])
    features = {s["feature"] for s in report}
    assert {"sex", "race", "age"} <= features  # age binned because it is sensitive
    assert "capital-gain" not in features  # other numeric features are not sliced
    flagged = [s for s in report if s["flagged"]]
    assert all(s["rows"] >= 30 and s["gap"] > 0.05 for s in flagged)
    assert report[: len(flagged)] == flagged  # worst first
    male = next(s for s in report if s["feature"] == "sex" and s["value"] == "Male")
    mask = splits.test["sex"] == "Male"
    assert male["rows"] == int(mask.sum())
    assert male["accuracy"] == pytest.approx(
        float((pred[mask] == splits.test["income"][mask]).mean())
    )
    worst = worst_rows(splits.test, pred, proba, classes, schema, labels, n=10)
    assert len(worst) == 10 and worst["probability_of_truth"].is_monotonic_increasing
    assert (worst["prediction"] != worst["income"]).all()
    assert "fnlwgt" not in worst.columns
