"""Explanations: SHAP values add up to the model's output, in the original features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import partial_dependence

from keel.data import infer_schema, prepare_labels
from keel.families.tabular.responsible import (
    counterfactual_hint,
    explain,
    explain_row,
    feature_columns,
    partial_dependences,
    permutation_ranking,
)
from keel.families.tabular.training import make_pipeline


@pytest.fixture(scope="module")
def adult(adult_frame: pd.DataFrame):
    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    return frame, labels, schema, frame[schema.feature_names]


def _raw_output(pipeline, x: pd.DataFrame) -> np.ndarray:
    """What each explainer explains: the margin of boosted/linear models, else P(>50K)."""
    model = pipeline.named_steps["model"]
    matrix = pipeline.named_steps["preprocess"].transform(x)
    name = type(model).__name__
    if name.startswith("LGBM"):
        return model.predict(matrix, raw_score=True)
    if "XGB" in name:
        return model.predict(matrix, output_margin=True)
    if hasattr(model, "decision_function"):
        return model.decision_function(matrix)
    return pipeline.predict_proba(x)[:, list(pipeline.classes_).index(">50K")]


@pytest.mark.parametrize(
    "name", ["lightgbm", "xgboost", "hist_gradient_boosting", "linear", "shallow_tree"]
)
def test_shap_values_sum_to_the_model_output(adult, name: str) -> None:
    frame, _labels, schema, x = adult
    pipeline = make_pipeline(name, "binary", schema, 0).fit(x, frame["income"])
    rows = x.sample(150, random_state=1)
    found = explain(pipeline, rows, x.head(100), "binary", ">50K")
    assert sorted(found.features) == sorted(schema.feature_names)  # the ORIGINAL features
    total = found.base + found.values.sum(axis=1)
    assert np.allclose(total, _raw_output(pipeline, rows), atol=1e-4)
    assert "'>50K'" in found.output
    importance = found.importance()
    assert list(importance.values()) == sorted(importance.values(), reverse=True)


def test_folding_covers_every_encoded_column(adult) -> None:
    frame, _, schema, x = adult
    pipeline = make_pipeline("lightgbm", "binary", schema, 0).fit(x, frame["income"])
    columns = feature_columns(pipeline.named_steps["preprocess"])
    width = pipeline.named_steps["preprocess"].transform(x.head(2)).shape[1]
    flat = [i for _, group in columns for i in group]
    assert flat == list(range(width)) and len(columns) == len(schema.feature_names)


def test_positive_class_first_flips_the_sign(adult) -> None:
    frame, _, schema, x = adult
    pipeline = make_pipeline("lightgbm", "binary", schema, 0).fit(x, frame["income"])
    rows = x.head(20)
    high = explain(pipeline, rows, x.head(50), "binary", ">50K")
    low = explain(pipeline, rows, x.head(50), "binary", "<=50K")
    assert np.allclose(low.values, -high.values) and np.allclose(low.base, -high.base)


def test_multiclass_and_regression(adult) -> None:
    from sklearn.datasets import load_diabetes, load_wine

    wine = load_wine(as_frame=True).frame.assign(target=lambda f: "c" + f["target"].astype(str))
    frame, _labels = prepare_labels(wine, "target", None, None)
    schema = infer_schema(frame, "target")
    x = frame[schema.feature_names]
    pipeline = make_pipeline("lightgbm", "multiclass", schema, 0).fit(x, frame["target"])
    found = explain(pipeline, x.head(30), x, "multiclass", target_class="c1")
    raw = pipeline.named_steps["model"].predict(
        pipeline.named_steps["preprocess"].transform(x.head(30)), raw_score=True
    )[:, 1]
    assert np.allclose(found.base + found.values.sum(axis=1), raw, atol=1e-6)
    diabetes = load_diabetes(as_frame=True).frame
    schema = infer_schema(diabetes, "target")
    x = diabetes[schema.feature_names]
    pipeline = make_pipeline("linear", "regression", schema, 0).fit(x, diabetes["target"])
    found = explain(pipeline, x.head(30), x.head(100), "regression")
    assert np.allclose(found.base + found.values.sum(axis=1), pipeline.predict(x.head(30)))
    assert found.output == "the predicted value"


def test_local_explanation_adds_up(adult) -> None:
    frame, _, schema, x = adult
    pipeline = make_pipeline("lightgbm", "binary", schema, 0).fit(x, frame["income"])
    local = explain_row(pipeline, x.iloc[[5]], x.head(100), "binary", ">50K", top=100)
    assert len(local["contributions"]) == len(schema.feature_names)
    summed = local["base"] + sum(c["contribution"] for c in local["contributions"])
    assert summed == pytest.approx(local["total"]) and local["total"] == pytest.approx(
        _raw_output(pipeline, x.iloc[[5]])[0], abs=1e-6
    )
    sizes = [abs(c["contribution"]) for c in local["contributions"]]
    assert sizes == sorted(sizes, reverse=True)
    assert local["contributions"][0]["value"] == x.iloc[5][local["contributions"][0]["feature"]]


def test_partial_dependence_equals_scikit_learn(adult) -> None:
    frame, _, schema, x = adult
    pipeline = make_pipeline("lightgbm", "binary", schema, 0).fit(x, frame["income"])
    rows = x.head(400)
    found = partial_dependences(
        pipeline, rows, ["hours-per-week", "occupation"], {"occupation"}, "binary", ">50K"
    )
    grid = np.array(found["hours-per-week"]["grid"], dtype=float)
    expected = partial_dependence(
        pipeline,
        rows.astype({"hours-per-week": float}),
        ["hours-per-week"],
        custom_values={"hours-per-week": grid},
        kind="average",
        response_method="predict_proba",
    )["average"][0]
    assert np.allclose(found["hours-per-week"]["average"], expected)
    assert found["occupation"]["categorical"] and len(found["occupation"]["grid"]) > 3


def test_permutation_ranking_finds_the_signal(adult) -> None:
    frame, _, schema, x = adult
    pipeline = make_pipeline("lightgbm", "binary", schema, 0).fit(x, frame["income"])
    ranking = permutation_ranking(
        pipeline, x, frame["income"].to_numpy(), "binary", "roc_auc", True, ">50K"
    )
    assert set(ranking) == set(schema.feature_names)
    means = [v["mean"] for v in ranking.values()]
    assert means == sorted(means, reverse=True) and means[0] > 0.01


def test_counterfactual_hint_really_flips_the_decision(adult) -> None:
    frame, _, schema, x = adult
    pipeline = make_pipeline("lightgbm", "binary", schema, 0).fit(x, frame["income"])
    categorical = {c.name for c in schema.features if c.kind == "string"}
    row = x.iloc[[3]]
    hint = counterfactual_hint(
        pipeline,
        row,
        x,
        ["age", "education-num", "capital-gain", "occupation"],
        categorical,
        ">50K",
    )
    assert hint is not None and hint["approximate"] and "approximate" in hint["note"]
    changed = row.copy()
    changed[hint["feature"]] = pd.Series([hint["to"]], index=row.index).astype(
        row[hint["feature"]].dtype
    )
    before = pipeline.predict_proba(row)[0, 1] >= 0.5
    after = pipeline.predict_proba(changed)[0, 1] >= 0.5
    assert before != after


def test_a_slow_model_is_explained_on_fewer_rows_and_says_how_many() -> None:
    import time as clock

    import pandas as pd

    from keel.families.tabular.responsible._explain import MIN_ROWS, PD_ROWS, explained_rows

    class Slow:
        def __init__(self, per_row: float) -> None:
            self.per_row = per_row

        def predict(self, rows: pd.DataFrame) -> list[int]:
            clock.sleep(self.per_row * len(rows))
            return [0] * len(rows)

    rows = pd.DataFrame({"a": range(500)})
    fast = explained_rows(Slow(0.0), rows, 10, 300)
    assert fast == {"shap": 300, "permutation": 1000, "dependence": PD_ROWS}
    slow = explained_rows(Slow(0.0002), rows, 10, 300)  # 0.1 s per 500 rows
    assert MIN_ROWS <= slow["permutation"] < 1000 and slow["shap"] < 300
    assert slow["dependence"] < PD_ROWS


def test_native_category_codes_fold_to_one_feature_each_and_stay_additive(adult_frame) -> None:
    from keel.data import infer_schema, prepare_labels
    from keel.families.tabular.responsible._explain import explain
    from keel.families.tabular.training import build_candidate

    frame, _ = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    model = build_candidate("lightgbm", "binary", schema, 0, {"categories": "native"})
    model.fit(frame[schema.feature_names], frame["income"])
    rows = frame[schema.feature_names].head(30)
    found = explain(model, rows, rows, "binary", ">50K")
    assert sorted(found.features) == sorted(schema.feature_names)
    matrix = model.named_steps["preprocess"].transform(rows)
    raw = model.named_steps["model"].predict(matrix, raw_score=True)
    sign = 1 if list(model.classes_).index(">50K") == 1 else -1
    assert np.allclose(found.base + found.values.sum(axis=1), sign * raw, atol=1e-6)
