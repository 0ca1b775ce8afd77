"""Candidate models: each one a scikit-learn Pipeline with its preprocessing inside."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from xgboost import XGBRegressor

from keel.data import LabelInfo, Schema, Splits
from keel.estimators import LabelledXGBClassifier, decides_itself
from keel.evaluation import MetricSpec, compute_metrics, decide, is_better
from keel.features import build_preprocessor

Factory = Callable[[str, int], tuple[Any, bool]]


def _dummy(task: str, seed: int) -> tuple[Any, bool]:
    if task == "regression":
        return DummyRegressor(strategy="mean"), False
    return DummyClassifier(strategy="prior", random_state=seed), False


def _linear(task: str, seed: int) -> tuple[Any, bool]:
    if task == "regression":
        return Ridge(alpha=1.0, random_state=seed), True
    return LogisticRegression(max_iter=2000, C=1.0, random_state=seed), True


def _lightgbm(task: str, seed: int) -> tuple[Any, bool]:
    params = {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "subsample": 0.9,
        "subsample_freq": 1,
        "colsample_bytree": 0.9,
        "random_state": seed,
        # One thread: on small machines OpenMP's default threading makes fits and
        # one-row predictions 100x slower as soon as anything else runs.
        "n_jobs": 1,
        "verbose": -1,
    }
    if task == "regression":
        return LGBMRegressor(**params), False
    return LGBMClassifier(**params), False


def _xgboost(task: str, seed: int) -> tuple[Any, bool]:
    params = {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "max_depth": 6,
        "min_child_weight": 1.0,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "tree_method": "hist",
        "random_state": seed,
        "n_jobs": 1,  # as for LightGBM
        "verbosity": 0,
    }
    if task == "regression":
        return XGBRegressor(**params), False
    # XGBoost only takes labels 0..k-1; the subclass encodes and decodes them.
    return LabelledXGBClassifier(**params), False


def _shallow_tree(task: str, seed: int) -> tuple[Any, bool]:
    if task == "regression":
        return DecisionTreeRegressor(max_depth=4, min_samples_leaf=20, random_state=seed), False
    return DecisionTreeClassifier(max_depth=4, min_samples_leaf=20, random_state=seed), False


def _hist_gradient_boosting(task: str, seed: int) -> tuple[Any, bool]:
    params = {"max_iter": 300, "learning_rate": 0.05, "random_state": seed, "early_stopping": False}
    if task == "regression":
        return HistGradientBoostingRegressor(**params), False
    return HistGradientBoostingClassifier(**params), False


def _random_forest(task: str, seed: int) -> tuple[Any, bool]:
    # n_jobs=1 for the same reason as LightGBM: parallelism comes from elsewhere.
    params = {"n_estimators": 200, "min_samples_leaf": 2, "random_state": seed, "n_jobs": 1}
    if task == "regression":
        return RandomForestRegressor(**params), False
    return RandomForestClassifier(**params), False


CANDIDATE_FACTORIES: dict[str, Factory] = {
    "dummy": _dummy,
    "linear": _linear,
    "shallow_tree": _shallow_tree,
    "lightgbm": _lightgbm,
    "xgboost": _xgboost,
    "hist_gradient_boosting": _hist_gradient_boosting,
    "random_forest": _random_forest,
}
BASELINES: tuple[str, ...] = ("dummy", "linear", "shallow_tree")


def make_pipeline(name: str, task: str, schema: Schema, seed: int) -> Pipeline:
    """Return the unfitted pipeline (preprocessing + estimator) of candidate ``name``."""
    try:
        factory = CANDIDATE_FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown candidate {name!r}; known: {', '.join(CANDIDATE_FACTORIES)}"
        ) from None
    estimator, scale = factory(task, seed)
    return Pipeline(
        [("preprocess", build_preprocessor(schema, scale_numeric=scale)), ("model", estimator)]
    )


@dataclass
class TrainedCandidate:
    """A fitted candidate and how it did on the validation rows."""

    name: str
    pipeline: Pipeline = field(repr=False)
    params: dict[str, Any]
    fit_seconds: float
    validation_metrics: dict[str, float]

    @property
    def primary(self) -> float:
        """Value of the task's primary metric on validation (NaN when undefined)."""
        return self.validation_metrics.get(self._primary_name, float("nan"))

    _primary_name: str = field(default="", repr=False)


def predict_with(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    task: str,
    threshold: float | None = None,
    positive_class: str | None = None,
):
    """Return ``(predictions, probabilities or None, classes)`` for ``frame``.

    With ``threshold`` (binary), the predictions are the decisions at that threshold
    on ``positive_class``'s probability — what serving answers — not ``predict``'s 0.5.
    A model that decides itself (fairness mitigation, ``keel.estimators``) is asked
    for its decisions.
    """
    if task == "regression":
        return pipeline.predict(frame), None, ()
    proba = pipeline.predict_proba(frame)
    classes = tuple(str(c) for c in pipeline.classes_)
    if decides_itself(pipeline):  # a mitigated model: its own (randomised) decisions
        return np.asarray(pipeline.predict(frame)).astype(str), proba, classes
    if threshold is not None and task == "binary":
        return decide(proba, classes, positive_class, threshold), proba, classes
    # the most probable class: what the classifiers' own predict() returns, in one pass
    predictions = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    return predictions.astype(str), proba, classes


def evaluate_pipeline(
    pipeline: Pipeline, frame: pd.DataFrame, schema: Schema, labels: LabelInfo
) -> dict[str, float]:
    """Metrics of a fitted pipeline on ``frame`` (which holds the target)."""
    predictions, proba, classes = predict_with(pipeline, frame[schema.feature_names], labels.task)
    return compute_metrics(
        labels.task,
        frame[schema.target].to_numpy(),
        predictions,
        proba=proba,
        classes=classes,
        positive_class=labels.positive_class,
    )


def train_candidates(
    names: Sequence[str],
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    seed: int,
    on_candidate: Callable[[str], None] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
) -> list[TrainedCandidate]:
    """Fit every named candidate on the train rows and score it on validation.

    ``params`` overrides hyper-parameters per candidate (the tuned ones).
    """
    x_train = splits.train[schema.feature_names]
    y_train = splits.train[schema.target].to_numpy()
    if labels.task == "regression":
        y_train = y_train.astype(float)
    trained = []
    for name in names:
        if on_candidate is not None:
            on_candidate(name)
        pipeline = make_pipeline(name, labels.task, schema, seed)
        overrides = (params or {}).get(name) or {}
        if overrides:
            pipeline.set_params(**{f"model__{k}": v for k, v in overrides.items()})
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            pipeline.fit(x_train, y_train)
        seconds = time.perf_counter() - started
        metrics = evaluate_pipeline(pipeline, splits.validation, schema, labels)
        fitted_params = {
            k: v
            for k, v in pipeline.named_steps["model"].get_params().items()
            if isinstance(v, str | int | float | bool) or v is None
        }
        candidate = TrainedCandidate(
            name=name,
            pipeline=pipeline,
            params=fitted_params,
            fit_seconds=seconds,
            validation_metrics=metrics,
            _primary_name=labels.primary.name,
        )
        trained.append(candidate)
    return trained


def select_best(
    candidates: Sequence[TrainedCandidate], metric: str | MetricSpec
) -> TrainedCandidate:
    """The candidate with the best validation primary metric (first one wins ties).

    ``metric`` is the primary metric's spec, or a task name for its default metric.
    """
    if not candidates:
        raise ValueError("no candidates were trained")
    best = candidates[0]
    for candidate in candidates[1:]:
        value = candidate.primary
        if not np.isnan(value) and is_better(metric, value, best.primary):
            best = candidate
    return best
