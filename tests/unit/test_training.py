"""Features and training: pipelines with preprocessing inside, fit on real rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from keel.data import infer_schema, prepare_labels, split_frame
from keel.families.tabular.features import build_preprocessor
from keel.families.tabular.training import (
    CANDIDATE_FACTORIES,
    make_pipeline,
    predict_with,
    select_best,
    train_candidates,
)


@pytest.fixture(scope="module")
def prepared(adult_frame: pd.DataFrame):
    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    splits = split_frame(frame, "income", labels.task, seed=0)
    return frame, labels, schema, splits


def test_preprocessor_handles_missing_and_unseen_categories(prepared) -> None:
    frame, _, schema, _ = prepared
    pre = build_preprocessor(schema, scale_numeric=True)
    x = frame[schema.feature_names]
    pre.fit(x)
    odd = x.head(3).copy()
    odd["workclass"] = ["Never-seen", None, "Private"]
    out = pre.transform(odd)
    assert out.shape[0] == 3 and np.isfinite(out).all()


def test_preprocessor_needs_features() -> None:
    schema = infer_schema(pd.DataFrame({"y": ["a", "b"] * 20}), "y")
    with pytest.raises(ValueError, match="no feature columns"):
        build_preprocessor(schema)


def test_booleans_are_encoded() -> None:
    frame = pd.DataFrame({"flag": [True, False] * 30, "y": ["a", "b", "b"] * 20})
    schema = infer_schema(frame, "y")
    assert schema["flag"].kind == "boolean"
    pre = build_preprocessor(schema).fit(frame[["flag"]])
    assert pre.transform(frame[["flag"]]).shape == (60, 2)
    with_missing = pd.DataFrame({"flag": pd.Series([True, None], dtype=object)})
    assert pre.transform(with_missing).tolist() == [[0.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("name", list(CANDIDATE_FACTORIES))
def test_every_candidate_is_a_cloneable_pipeline(prepared, name: str) -> None:
    _, labels, schema, _ = prepared
    pipeline = make_pipeline(name, labels.task, schema, seed=0)
    assert list(pipeline.named_steps) == ["preprocess", "model"]
    clone(pipeline)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_every_fitted_candidate_is_packageable_with_skops(prepared, task: str) -> None:
    """Any candidate can win; the registry must trust every type it holds."""
    import skops.io as sio

    from keel.registry import TRUSTED_TYPES

    _, _, schema, splits = prepared
    rows = splits.train.head(300)
    target = "age" if task == "regression" else "income"
    if task == "regression":
        schema = infer_schema(rows.drop(columns=["income"]), "age", ["fnlwgt"])
    for name in CANDIDATE_FACTORIES:
        pipeline = make_pipeline(name, task, schema, seed=0)
        pipeline.fit(rows[schema.feature_names], rows[target])
        untrusted = set(sio.get_untrusted_types(data=sio.dumps(pipeline)))
        assert untrusted <= set(TRUSTED_TYPES), (name, task, untrusted - set(TRUSTED_TYPES))


def test_unknown_candidate() -> None:
    schema = infer_schema(pd.DataFrame({"x": range(40), "y": ["a", "b"] * 20}), "y")
    with pytest.raises(ValueError, match="unknown candidate 'xgb'"):
        make_pipeline("xgb", "binary", schema, 0)


def test_train_candidates_scores_on_validation_and_selects(prepared) -> None:
    _, labels, schema, splits = prepared
    seen: list[str] = []
    trained = train_candidates(list(CANDIDATE_FACTORIES), splits, schema, labels, 0, seen.append)
    assert seen == list(CANDIDATE_FACTORIES)
    by_name = {c.name: c for c in trained}
    assert by_name["dummy"].primary == pytest.approx(0.5)
    assert by_name["lightgbm"].primary > 0.85
    assert by_name["lightgbm"].params["n_jobs"] == 1
    best = select_best(trained, labels.task)
    assert best.name != "dummy"
    predictions, proba, classes = predict_with(
        best.pipeline, splits.test[schema.feature_names], "binary"
    )
    assert proba.shape == (len(splits.test), 2) and classes == labels.classes
    assert set(predictions) <= set(labels.classes)


def test_overrides_reach_every_candidate_not_only_the_first(prepared) -> None:
    # Regression: the fitted-params dict once shadowed the overrides after the first
    # candidate, so tuned hyper-parameters never reached LightGBM.
    _, labels, schema, splits = prepared
    trained = train_candidates(
        ["dummy", "shallow_tree", "lightgbm"],
        splits,
        schema,
        labels,
        0,
        params={"shallow_tree": {"max_depth": 2}, "lightgbm": {"n_estimators": 7}},
    )
    by_name = {c.name: c for c in trained}
    assert by_name["shallow_tree"].params["max_depth"] == 2
    assert by_name["lightgbm"].params["n_estimators"] == 7
    assert by_name["lightgbm"].pipeline.named_steps["model"].n_estimators_ == 7


def test_configured_metric_chooses_the_model(prepared) -> None:
    from keel.errors import DataError

    frame, _, schema, splits = prepared
    _, labels = prepare_labels(frame, "income", None, None, metric="log_loss")
    assert labels.primary.name == "log_loss" and not labels.primary.greater_is_better
    trained = train_candidates(["dummy", "linear"], splits, schema, labels, 0)
    assert trained[0].primary == trained[0].validation_metrics["log_loss"]
    assert select_best(trained, labels.primary).name == "linear"
    with pytest.raises(DataError, match=r"'rmse' is not a binary metric.*choose one of roc_auc"):
        prepare_labels(frame, "income", None, None, metric="rmse")
    with pytest.raises(DataError, match="did you mean 'roc_auc'"):
        prepare_labels(frame, "income", None, None, metric="roc_aoc")


def test_regression_candidates_on_real_data() -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame, labels = prepare_labels(frame, "target", None, None)
    assert labels.task == "regression"
    schema = infer_schema(frame, "target")
    splits = split_frame(frame, "target", "regression", seed=0)
    trained = train_candidates(["dummy", "linear"], splits, schema, labels, 0)
    best = select_best(trained, "regression")
    assert best.name == "linear" and best.primary < trained[0].primary


def test_select_best_needs_candidates() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        select_best([], "binary")


def test_time_and_group_folds_respect_the_split(prepared) -> None:
    from keel.families.tabular.training import fold_indices

    frame, _, _, _ = prepared
    frame = frame.assign(t=np.arange(len(frame))[::-1], household=np.arange(len(frame)) // 5)
    y = frame["income"].to_numpy()
    for fit, held in fold_indices(frame, y, "binary", 4, 0, time_column="t"):
        assert frame["t"].iloc[fit].max() < frame["t"].iloc[held].min()  # past → future
    for fit, held in fold_indices(frame, y, "binary", 4, 0, group_column="household"):
        assert not set(frame["household"].iloc[fit]) & set(frame["household"].iloc[held])
    plain = fold_indices(frame, y, "binary", 4, 0)
    assert sorted(np.concatenate([h for _, h in plain]).tolist()) == list(range(len(frame)))


def test_learning_curve_diagnoses_variance(prepared) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    from keel.families.tabular.features import build_preprocessor
    from keel.families.tabular.training import learning_curve

    _, labels, schema, splits = prepared
    deep_tree = Pipeline(
        [
            ("preprocess", build_preprocessor(schema)),
            ("model", DecisionTreeClassifier(random_state=0)),
        ]
    )
    curve = learning_curve(deep_tree, splits, schema, labels)
    assert curve["diagnosis"].startswith("high variance")  # an unpruned tree memorises
    assert all(p["train"] > 0.95 for p in curve["points"])


@pytest.mark.parametrize("objective", ["f1", "balanced_accuracy", "accuracy"])
def test_threshold_maximises_its_objective_on_validation(prepared, objective: str) -> None:
    from sklearn import metrics as skm

    from keel.families.tabular.training import choose_threshold

    _, labels, schema, splits = prepared
    [model] = train_candidates(["linear"], splits, schema, labels, 0)
    chosen = choose_threshold(model, splits, schema, labels, objective)
    _, proba, _ = predict_with(model.pipeline, splits.validation[schema.feature_names], "binary")
    truth = splits.validation["income"].to_numpy() == ">50K"
    score = {
        "f1": skm.f1_score,
        "balanced_accuracy": skm.balanced_accuracy_score,
        "accuracy": skm.accuracy_score,
    }[objective]
    at_chosen = score(truth, proba[:, 1] >= chosen["value"])
    assert at_chosen == pytest.approx(chosen["validation_score"], abs=1e-9)
    for other in np.linspace(0.05, 0.95, 19):  # no simple cut does better
        assert score(truth, proba[:, 1] >= other) <= at_chosen + 1e-12
    with pytest.raises(ValueError, match="threshold objective"):
        choose_threshold(model, splits, schema, labels, "none")
