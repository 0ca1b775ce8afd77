"""The Task contract: every task plug-in of the tabular family passes these tests.

A new kind of model registers its plug-in and adds a small real dataset to
``DATASETS``; nothing else here changes. The tests run each plug-in on real rows
(UCI Adult, scikit-learn's wine and diabetes), through a real fitted pipeline.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine

from keel.config import CANDIDATES, ENSEMBLE
from keel.data import infer_schema, prepare_labels
from keel.errors import ConfigError
from keel.families import FAMILIES
from keel.families.tabular.training import make_pipeline
from keel.tasks import TASKS, Task, all_tasks, get_task


def _adult(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["fnlwgt"]).head(600)


def _wine(_: pd.DataFrame) -> pd.DataFrame:
    data = load_wine(as_frame=True).frame
    return data.assign(target=data["target"].map({0: "a", 1: "b", 2: "c"}))


def _diabetes(_: pd.DataFrame) -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame


DATASETS = {
    "binary": (_adult, "income"),
    "multiclass": (_wine, "target"),
    "regression": (_diabetes, "target"),
}


TABULAR = sorted(FAMILIES["tabular"].tasks)


@pytest.fixture(scope="module", params=TABULAR)
def case(request, adult_frame: pd.DataFrame):
    task = TASKS[request.param]
    load, target = DATASETS[task.name]
    rows = load(adult_frame).sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame, labels = prepare_labels(rows, target, task.name, None)
    schema = infer_schema(frame, target, [])
    half = len(frame) // 2
    train, test = frame.iloc[:half], frame.iloc[half:].reset_index(drop=True)
    model = make_pipeline("linear", task.name, schema, 0)
    model.fit(train[schema.feature_names], task.truth(train[target]))
    predictions, proba, classes = task.predict(
        model, test[schema.feature_names], None, labels.positive_class
    )
    return task, labels, schema, model, test, predictions, proba, classes


def test_every_task_has_a_dataset_here() -> None:
    assert set(TABULAR) == set(DATASETS), "a new task needs a small real dataset in DATASETS"
    # a ranking task and a retrieval task have their own contract tests
    # (tests/unit/test_recommendation.py, tests/unit/test_retrieval.py)
    declared = {t for family in FAMILIES.values() for t in family.tasks}
    assert set(all_tasks()) == declared  # every family's tasks load, and nothing else


def test_registry_lookup_and_unknown_names() -> None:
    for name, task in all_tasks().items():
        assert get_task(name) is task and task.name == name
        assert isinstance(task, Task) == (name in FAMILIES["tabular"].tasks)
        assert get_task(task) is task
    with pytest.raises(ConfigError, match=r"'regresion' is not a task.*did you mean 'regression'"):
        get_task("regresion")


def test_labels_and_metrics(case) -> None:
    task, labels, schema, _model, test, predictions, proba, classes = case
    assert labels.kind is task
    assert bool(labels.classes) == task.labelled_classes
    assert task.metrics.default in task.metrics.directions
    assert task.primary().name == task.metrics.default
    assert task.slice_metric in task.metrics.directions
    y = task.truth(test[schema.target])
    exact = task.metrics.exact(y, predictions, proba, classes, labels.positive_class)
    fast = task.metrics.fast(y, predictions, proba, classes, labels.positive_class)
    assert exact and set(exact) <= set(task.metrics.directions)
    assert exact.keys() == fast.keys()
    for name in exact:
        assert math.isclose(exact[name], fast[name], rel_tol=1e-9, abs_tol=1e-9), name
    if task.labelled_classes:
        assert proba is not None and proba.shape == (len(test), len(classes))
        assert set(np.asarray(predictions).astype(str)) <= set(classes)
    assert len(predictions) == len(test)


def test_outputs_watched_worst_and_diagnostics(case) -> None:
    task, labels, schema, _model, test, predictions, proba, classes = case
    n = len(test)
    outputs = task.outputs(predictions, proba, classes, labels.positive_class)
    assert outputs and set(outputs) <= {"prediction", "score"}
    assert all(len(v) == n for v in outputs.values())
    watched, _column = task.watched(predictions, proba, classes, labels.positive_class)
    assert len(watched) == n and np.isfinite(np.asarray(watched, dtype=float)).all()
    out = test[schema.feature_names].copy()
    order = task.worst(out, task.truth(test[schema.target]), predictions, proba, classes)
    assert sorted(order.tolist()) == list(range(n)) and len(out.columns) > len(schema.features)
    found = task.diagnostics(
        task.truth(test[schema.target]), predictions, proba, classes, labels.positive_class
    )
    json.dumps(found)  # plot-ready: plain JSON


def test_every_candidate_builds_for_every_task(case) -> None:
    task, _labels, _schema, *_ = case
    for name in CANDIDATES:
        if (
            name == ENSEMBLE
        ):  # built from its members' spec (keel.families.tabular.training.make_ensemble)
            continue
        estimator, scale = task.estimator(name, 0)
        assert hasattr(estimator, "fit") and isinstance(scale, bool)


def test_folds_and_splits(case) -> None:
    task, _labels, schema, _model, test, *_ = case
    folds = list(task.folds(3, 0).split(test, task.truth(test[schema.target])))
    assert len(folds) == 3
    assert isinstance(task.stratified, bool)


def test_leakage_probes_find_the_target_itself(case) -> None:
    task, labels, schema, _model, test, *_ = case
    y = test[schema.target]
    half = len(test) // 2
    keys = y.astype(str)
    prediction = task.probe_category(keys[:half], y[:half], keys[half:], labels.positive_class)
    metric, score = task.probe_score(y[half:], prediction, labels.positive_class)
    if task.labelled_classes:  # a category that is the target: a perfect predictor
        assert metric and score > 0.99
    x = test[schema.feature_names[0]]
    numbers = pd.to_numeric(x, errors="coerce").fillna(0).to_numpy().reshape(-1, 1)
    predicted = task.probe_numeric(numbers[:half], y[:half], numbers[half:], labels.positive_class)
    assert len(predicted) == len(test) - half
    numeric = pd.to_numeric(x, errors="coerce")
    name, value = task.probe_monotone(
        numeric[:half], y[:half], numeric[half:], y[half:], labels.positive_class
    )
    assert isinstance(name, str) and 0.0 <= value <= 1.0
    # the target itself, as a number, is a perfect monotone predictor (where there is one)
    if task.name != "multiclass":
        truth = pd.Series(
            task.truth(y)
            if not task.labelled_classes
            else (y.astype(str) == str(labels.positive_class)).astype(float)
        )
        _, perfect = task.probe_monotone(
            truth[:half], y[:half], truth[half:], y[half:], labels.positive_class
        )
        assert perfect > 0.99


def test_fairness_explanations_and_live_performance(case) -> None:
    task, labels, schema, model, test, predictions, proba, classes = case
    truth, decided = task.fairness_arrays(test[schema.target], predictions, labels.positive_class)
    functions = task.group_metrics()
    assert "count" in functions and task.fairness_headline in functions
    groups = np.arange(len(test)) % 2
    size = np.bincount(groups, minlength=2).astype(float)
    resampled = task.group_resample(groups, truth, decided, 2, size)
    assert set(resampled) <= set(functions) and all(len(v) == 2 for v in resampled.values())
    answers, output = task.dependence(
        model, test[schema.feature_names].head(10), classes, labels.positive_class
    )
    assert answers.shape[0] == 10 and isinstance(output, str) and output
    assert task.explained_output(True, "x") and task.explained_output(False, "x")
    live = task.live_performance(
        test[schema.target].astype(str) if task.labelled_classes else test[schema.target],
        pd.Series(predictions),
        pd.Series(outputs_score(task, predictions, proba, classes, labels.positive_class)),
        labels.positive_class,
    )
    assert live and all(math.isfinite(v) for v in live.values())
    assert isinstance(task.balance(test[schema.target]), dict)


def outputs_score(task, predictions, proba, classes, positive):
    found = task.outputs(predictions, proba, classes, positive)
    return found.get("score", np.full(len(predictions), np.nan))
