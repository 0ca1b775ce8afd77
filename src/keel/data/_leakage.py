"""Leakage checks run on the splits before any model is trained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from keel.data._schema import Schema
from keel.data._split import Splits, row_keys
from keel.errors import DataError
from keel.tasks import get_task

DEFAULT_THRESHOLD = 0.99


@dataclass(frozen=True)
class FeatureScore:
    """How well one feature alone predicts the target on the validation rows."""

    feature: str
    metric: str
    score: float


def duplicates_across(splits: Splits, key_columns: Sequence[str]) -> dict[str, int]:
    """Rows of validation and test identical (on ``key_columns``) to some training row."""
    train = set(row_keys(splits.train, key_columns).tolist())
    return {
        name: int(sum(k in train for k in row_keys(part, key_columns).tolist()))
        for name, part in (("validation", splits.validation), ("test", splits.test))
    }


def check_duplicates(splits: Splits, key_columns: Sequence[str]) -> None:
    """Stop when a test or validation row repeats a training row on every model column."""
    found = duplicates_across(splits, key_columns)
    if found["test"] or found["validation"]:
        how = {"time": "time_column", "group": "group_column"}.get(splits.method, "the split")
        raise DataError(
            f"{found['test']} test and {found['validation']} validation row(s) are identical to"
            f" training rows on every column the model sees; with {how} Keel cannot keep"
            " them together. Remove the duplicates, or add a column that tells them apart"
        )


def single_feature_scores(
    splits: Splits, schema: Schema, task: str, positive_class: str | None
) -> list[FeatureScore]:
    """Score each feature alone (fit on train, scored on validation), best first.

    Numbers go through a shallow tree; categories through their per-category target
    rate (binary), majority class (multiclass) or mean (regression). Metrics: ROC AUC
    (binary), balanced accuracy (multiclass), R² (regression).
    """
    target = schema.target
    task = get_task(task)
    y_train = splits.train[target]
    y_val = splits.validation[target]
    scores = []
    for column in schema.features:
        x_train = splits.train[column.name]
        x_val = splits.validation[column.name]
        if column.kind in ("integer", "float"):
            prediction = _tree_prediction(x_train, y_train, x_val, task, positive_class)
            metric, score = _score(y_val, prediction, task, positive_class)
            # A tree only approximates a smooth copy of the target; a monotone one
            # is caught exactly by rank AUC (binary) or a straight line (regression).
            monotone_metric, monotone = _monotone_score(
                x_train, y_train, x_val, y_val, task, positive_class
            )
            if monotone > score:
                metric, score = monotone_metric, monotone
        else:
            prediction = _category_prediction(x_train, y_train, x_val, task, positive_class)
            metric, score = _score(y_val, prediction, task, positive_class)
        scores.append(FeatureScore(column.name, metric, score))
    return sorted(scores, key=lambda s: -s.score)


def check_single_feature_leakage(
    scores: list[FeatureScore], target: str, threshold: float = DEFAULT_THRESHOLD
) -> None:
    """Stop when one feature alone predicts the target almost perfectly."""
    leaks = [s for s in scores if s.score >= threshold]
    if leaks:
        worst = leaks[0]
        raise DataError(
            f"feature {worst.feature!r} alone predicts target {target!r} with {worst.metric}"
            f" {worst.score:.4f} on validation (threshold {threshold}): target leakage? If it"
            " is only known after the outcome, add it to ignore_columns; if it is legitimate,"
            " raise leakage_threshold"
        )


def _tree_prediction(x_train, y_train, x_val, task, positive_class) -> np.ndarray:
    fill = float(pd.to_numeric(x_train, errors="coerce").median())
    xt = pd.to_numeric(x_train, errors="coerce").fillna(fill).to_numpy().reshape(-1, 1)
    xv = pd.to_numeric(x_val, errors="coerce").fillna(fill).to_numpy().reshape(-1, 1)
    return task.probe_numeric(xt, y_train, xv, positive_class)


def _monotone_score(x_train, y_train, x_val, y_val, task, positive_class) -> tuple[str, float]:
    """Scores that catch a feature moving in lockstep with the target.

    Binary: rank ROC AUC of the raw values (either direction). Regression: the larger
    of a straight line's R² and Spearman's rho² (a monotone but curved copy).
    """
    xt = pd.to_numeric(x_train, errors="coerce")
    xv = pd.to_numeric(x_val, errors="coerce")
    return task.probe_monotone(xt, y_train, xv, y_val, positive_class)


def _category_prediction(x_train, y_train, x_val, task, positive_class) -> np.ndarray:
    keys_train = x_train.astype(str).where(x_train.notna(), "(missing)")
    keys_val = x_val.astype(str).where(x_val.notna(), "(missing)")
    return task.probe_category(keys_train, y_train, keys_val, positive_class)


def _score(y_val, prediction, task, positive_class) -> tuple[str, float]:
    return task.probe_score(y_val, prediction, positive_class)
