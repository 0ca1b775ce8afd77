"""Greedy ensemble selection: never worse than the best single model on its rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_squared_error, roc_auc_score

from keel.evaluation import ensemble_selection


def test_two_models_with_independent_errors_are_averaged() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=2000)
    one = truth + rng.normal(scale=1.0, size=2000)
    two = truth + rng.normal(scale=1.0, size=2000)
    bad = truth + rng.normal(scale=5.0, size=2000)

    def rmse(values: np.ndarray) -> float:
        return float(np.sqrt(mean_squared_error(truth, values)))

    found = ensemble_selection({"bad": bad, "one": one, "two": two}, rmse, False, rounds=20)
    assert found.weights["bad"] == 0.0
    assert found.weights["one"] == pytest.approx(0.5, abs=0.1)
    assert found.score < found.best_single_score * 0.8  # averaging halves the variance
    assert found.members[0] in ("one", "two") and "bad" not in found.members
    assert sum(found.weights.values()) == pytest.approx(1.0)


def test_a_dominant_model_is_kept_alone_and_the_result_never_loses() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000)
    good = np.clip(y * 0.8 + rng.normal(0.1, 0.1, 1000), 0, 1)
    noise = rng.random(1000)
    found = ensemble_selection(
        {"noise": noise, "good": good}, lambda p: roc_auc_score(y, p), True, rounds=10
    )
    assert found.best_single == "good"
    assert found.score >= found.best_single_score
    assert found.weights == {"noise": 0.0, "good": 1.0}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ensemble_selection({}, lambda p: 0.0)
    with pytest.raises(ValueError, match="same rows"):
        ensemble_selection({"a": np.zeros(3), "b": np.zeros(4)}, lambda p: 0.0)


def test_the_ensemble_estimator_averages_its_members_and_refits_clones() -> None:
    import pandas as pd
    from sklearn.base import clone
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    from keel.estimators import EnsembleClassifier, EnsembleRegressor, margin, margin_to_proba

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    y = y.map({0: "malignant", 1: "benign"})
    linear = sk_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    unused = DecisionTreeClassifier(max_depth=1)
    ensemble = EnsembleClassifier(
        [("linear", linear), ("tree", tree), ("unused", unused)], [0.75, 0.25, 0.0]
    ).fit(x, y)
    assert [n for n, _ in ensemble.members_] == ["linear", "tree"]
    # log-odds are summed: the linear model's decision function, the tree's clipped logit
    expected = 0.75 * clone(linear).fit(x, y).decision_function(x) + 0.25 * margin(
        clone(tree).fit(x, y), x
    )
    assert np.allclose(ensemble.decision_function(x), expected)
    assert np.allclose(ensemble.predict_proba(x), margin_to_proba(expected))
    assert np.allclose(ensemble.predict_proba(x).sum(axis=1), 1.0)
    assert set(ensemble.predict(x)) == {"malignant", "benign"}
    assert ensemble.score(x, y) > 0.9
    assert not hasattr(clone(ensemble), "members_")  # clone: unfitted, same settings

    xr, yr = load_diabetes(return_X_y=True, as_frame=True)
    regressor = EnsembleRegressor(
        [("linear", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=3))],
        [1, 1],
    ).fit(xr, yr)
    halves = 0.5 * LinearRegression().fit(xr, yr).predict(xr) + 0.5 * DecisionTreeRegressor(
        max_depth=3
    ).fit(xr, yr).predict(xr)
    assert np.allclose(regressor.predict(pd.DataFrame(xr)), halves)
    with pytest.raises(ValueError, match="non-negative weight"):
        EnsembleRegressor([("linear", LinearRegression())], [-1]).fit(xr, yr)


@pytest.mark.parametrize("classes", [2, 3])
def test_boosted_members_margins_are_their_log_odds(classes: int) -> None:
    from lightgbm import LGBMClassifier
    from sklearn.datasets import make_classification

    from keel.estimators import (
        EnsembleClassifier,
        LabelledXGBClassifier,
        margin,
        margin_to_proba,
    )

    x, y = make_classification(600, 8, n_informative=5, n_classes=classes, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    lgb = LGBMClassifier(n_estimators=30, n_jobs=1, verbose=-1).fit(x, labels)
    xgb = LabelledXGBClassifier(n_estimators=30, n_jobs=1).fit(x, labels)
    for model in (lgb, xgb):  # the margin reproduces the model's own probabilities
        assert np.allclose(margin_to_proba(margin(model, x)), model.predict_proba(x), atol=1e-6)
    ensemble = EnsembleClassifier([("lgb", lgb), ("xgb", xgb)], [0.5, 0.5]).fit(x, labels)
    expected = 0.5 * margin(ensemble.members_[0][1], x) + 0.5 * margin(ensemble.members_[1][1], x)
    assert np.allclose(ensemble.decision_function(x), expected)
    assert list(ensemble.classes_) == sorted(set(labels))
    assert ensemble.score(x, labels) > 0.8


def test_members_fitted_on_different_classes_are_refused() -> None:
    from sklearn.tree import DecisionTreeClassifier

    from keel.estimators import EnsembleClassifier

    class Renamed(DecisionTreeClassifier):
        def fit(self, X, y, sample_weight=None):  # noqa: N803
            return super().fit(X, np.where(y == "a", "z", y), sample_weight)

    x = np.arange(20, dtype=float).reshape(-1, 1)
    y = np.array(["a", "b"] * 10)
    with pytest.raises(ValueError, match="disagree"):
        EnsembleClassifier([("t", DecisionTreeClassifier()), ("r", Renamed())]).fit(x, y)


def test_tuning_keeps_the_best_trials_out_of_fold_outputs_and_selection_uses_them(
    adult_frame,
) -> None:
    from keel.data import infer_schema, prepare_labels, split_frame
    from keel.families.tabular.training import (
        build_candidate,
        cross_validate,
        select_ensemble,
        tune,
    )

    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    train = split_frame(frame, "income", "binary", seed=0).train
    tuned = {
        name: tune(name, train, schema, labels, 0, 0, 3, trials=4, keep_outputs=2)
        for name in ("lightgbm", "xgboost")
    }
    for result in tuned.values():
        kept = [t for t in result.trials if t.outputs is not None]
        assert len(kept) == 2  # only the two best trials keep theirs
        best_two = sorted((t.score for t in result.trials if t.score is not None), reverse=True)
        assert sorted(t.score for t in kept) == sorted(best_two[:2])
        assert kept[0].outputs.shape == (len(train),) and np.isfinite(kept[0].outputs).all()
    # the kept outputs are the folds' own predictions: the same fits give the same scores
    best = max(tuned["lightgbm"].trials, key=lambda t: t.score or 0)
    pipeline = build_candidate("lightgbm", "binary", schema, 0, best.params)
    parts: list = []
    cross_validate(pipeline, train, schema, labels, 3, 0, outputs=parts)
    again = np.empty(len(train))
    for rows, values in parts:
        again[rows] = values
    assert np.allclose(again, best.outputs)

    found = select_ensemble(tuned, train, schema, labels, 3, 0, top=2, rounds=10)
    assert found is not None  # on this sample two trials do better together
    members = found.best_params["members"]
    assert len(members) >= 2 and sum(m["weight"] for m in members) == pytest.approx(1)
    assert found.best_score >= found.best_params["best_single_score"] - 1e-12
    assert len(found.best_fold_metrics) == 3
    lonely = {"lightgbm": tuned["lightgbm"]}
    lonely["lightgbm"].trials[:] = [t for t in lonely["lightgbm"].trials if t is best]
    assert select_ensemble(lonely, train, schema, labels, 3, 0) is None  # one model: none


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_an_ensemble_is_explained_additively_for_every_task(task: str) -> None:
    import pandas as pd
    from sklearn.datasets import load_diabetes, load_wine

    from keel.data import infer_schema, prepare_labels
    from keel.families.tabular.responsible._explain import explain
    from keel.families.tabular.training import make_ensemble

    loader = load_diabetes if task == "regression" else load_wine
    x, y = loader(return_X_y=True, as_frame=True)
    frame = x.assign(target=y if task == "regression" else y.map(lambda v: f"c{v}"))
    frame, labels = prepare_labels(frame, "target", None, None)
    schema = infer_schema(frame, "target", [])
    spec = {
        "members": [
            {
                "name": "lightgbm",
                "candidate": "lightgbm",
                "params": {"n_estimators": 40},
                "weight": 0.7,
            },
            {
                "name": "xgboost",
                "candidate": "xgboost",
                "params": {"n_estimators": 30},
                "weight": 0.3,
            },
        ]
    }
    model = make_ensemble(spec, labels.task, schema, 0).fit(
        frame[schema.feature_names], labels.kind.truth(frame["target"])
    )
    rows = frame[schema.feature_names].head(20)
    found = explain(model, rows, frame[schema.feature_names].head(50), labels.task)
    matrix = model.named_steps["preprocess"].transform(rows)
    inner = model.named_steps["model"]
    if task == "regression":
        expected = inner.predict(matrix)
    else:  # each row's predicted class, in log-odds (logits)
        logits = inner.decision_function(matrix)
        expected = logits[np.arange(len(rows)), logits.argmax(axis=1)]
    assert np.allclose(found.base + found.values.sum(axis=1), expected, atol=1e-4)
    assert isinstance(pd.Series(found.importance()), pd.Series)


def test_the_whole_run_budget_leaves_the_later_stages_their_time(adult_frame) -> None:
    import time

    from keel.config import parse_config
    from keel.data import infer_schema, prepare_labels, split_frame
    from keel.families.tabular.stages import RunContext, after_tuning_seconds, tune

    base = {"name": "b", "data": "x.csv", "target": "income", "cv_folds": 3, "budget": 30}
    config = parse_config(base)
    # more rows, slower fits, an ensemble and a refit on all rows all need more time
    small = after_tuning_seconds(config, 1000, {"lightgbm": 0.5})
    assert after_tuning_seconds(config, 50_000, {"lightgbm": 0.5}) > small
    assert after_tuning_seconds(config, 1000, {"lightgbm": 2.0}) > small
    ensemble = parse_config({**base, "candidates": ["lightgbm", "ensemble"]})
    assert after_tuning_seconds(ensemble, 1000, {"lightgbm": 0.5}) > small
    assert after_tuning_seconds(parse_config({**base, "final_fit": "all_rows"}), 1000, {"x": 1}) > (
        after_tuning_seconds(config, 1000, {"x": 1})
    )
    # a classifier's evidence costs more than a regressor's, more classes more again
    kinds = [
        after_tuning_seconds(config, 1000, {"x": 1}, task=task, classes=k)
        for task, k in (("regression", 0), ("binary", 2), ("multiclass", 4))
    ]
    assert kinds == sorted(kinds) and len(set(kinds)) == 3
    assert after_tuning_seconds(config, 1000, {"x": 1}, features=80, trials=90) > kinds[1]

    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    splits = split_frame(frame, "income", "binary", seed=0)
    inputs = {"splits": splits, "schema": schema, "labels": labels, "fixed_params": None}
    two = parse_config({**base, "candidates": ["lightgbm", "xgboost"]})
    # the run's budget is already spent: each candidate still gets its first trial
    spent = RunContext(two, None, started=time.perf_counter() - 30)
    tuned = tune(inputs, spent)["tuned"]
    assert {n: len(r.trials) for n, r in tuned.items()} == {"lightgbm": 1, "xgboost": 1}
