"""Behaviour tests declared in keel.yaml, run on the chosen model before it is aliased."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from keel.config import DirectionalTest, InvarianceTest, MinimumTest
from keel.data import LabelInfo, Schema
from keel.errors import DataError, did_you_mean
from keel.families.tabular.training._candidates import predict_with
from keel.tasks import compute_metrics, get_task, greater_is_better

MAX_OFFENDING = 5


def check_behaviour_config(tests: Sequence[Any], schema: Schema, task: str) -> None:
    """Fail before training when a behaviour test names a column or metric that is not there."""
    features = schema.feature_names
    for i, test in enumerate(tests):
        where = f"key 'behaviour[{i}]' ({test.kind})"
        columns = [test.feature] if hasattr(test, "feature") else list(test.where)
        for column in columns:
            allowed = features if hasattr(test, "feature") else [*features, *schema.names]
            if column not in allowed:
                raise DataError(
                    f"{where}: {column!r} is not a model feature{did_you_mean(column, allowed)}"
                )
        if isinstance(test, DirectionalTest) and schema[test.feature].kind not in (
            "integer",
            "float",
        ):
            raise DataError(f"{where}: feature {test.feature!r} is not numeric")
        if isinstance(test, MinimumTest):
            known = tuple(get_task(task).metrics.directions)
            if test.metric not in known:
                raise DataError(
                    f"{where}: metric {test.metric!r} is not one of {', '.join(known)}"
                    f"{did_you_mean(test.metric, known)}"
                )


def _score(model: Any, frame: pd.DataFrame, labels: LabelInfo, reference: np.ndarray | None):
    """The number a behaviour test watches: P(positive), the prediction, or P(class)."""
    predictions, proba, classes = predict_with(model, frame, labels.task)
    return labels.kind.watched(predictions, proba, classes, labels.positive_class, reference)


def run_behaviour_tests(
    tests: Sequence[Any],
    model: Any,
    test_rows: pd.DataFrame,
    schema: Schema,
    labels: LabelInfo,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Run every declared test on the test rows; each result says passed and why not.

    ``threshold`` is the shipped binary decision threshold (minimum-functionality
    metrics are computed on the decisions serving would give).
    """
    x = test_rows[schema.feature_names].reset_index(drop=True)
    base, column = _score(model, x, labels, None)
    results = []
    for test in tests:
        if isinstance(test, InvarianceTest):
            results.append(_invariance(test, model, x, labels, base, column, schema))
        elif isinstance(test, DirectionalTest):
            results.append(_directional(test, model, x, labels, base, column))
        else:
            results.append(_minimum(test, model, test_rows, schema, labels, threshold))
    return results


def _offending(x: pd.DataFrame, change: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
    order = rows[np.argsort(-np.abs(change[rows]))][:MAX_OFFENDING]
    out = []
    for i in order:
        record = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in x.iloc[i].items()}
        out.append({"row": int(i), "change": round(float(change[i]), 6), "features": record})
    return out


def _invariance(test, model, x, labels, base, column, schema) -> dict[str, Any]:
    series = x[test.feature]
    if schema[test.feature].kind in ("integer", "float"):
        spread = float(series.std()) or 1.0
        alternatives = [series + spread, series - spread]
    else:
        values = series.dropna().unique().tolist()
        alternatives = [pd.Series([v] * len(x), index=x.index, dtype=series.dtype) for v in values]
    worst = np.zeros(len(x))
    for alternative in alternatives:
        changed, _ = _score(model, x.assign(**{test.feature: alternative}), labels, column)
        delta = changed - base
        worst = np.where(np.abs(delta) > np.abs(worst), delta, worst)
    bad = np.flatnonzero(np.abs(worst) > test.max_change)
    return {
        "kind": "invariance",
        "feature": test.feature,
        "passed": len(bad) == 0,
        "detail": f"largest change {float(np.max(np.abs(worst))):.4f} (allowed {test.max_change});"
        f" {len(bad)} of {len(x)} rows beyond it",
        "offending_rows": _offending(x, worst, bad),
    }


def _directional(test, model, x, labels, base, column) -> dict[str, Any]:
    step = test.step or (float(x[test.feature].std()) or 1.0)
    changed, _ = _score(model, x.assign(**{test.feature: x[test.feature] + step}), labels, column)
    delta = changed - base
    sign = 1.0 if test.direction == "increasing" else -1.0
    bad = np.flatnonzero(sign * delta < -test.tolerance)
    return {
        "kind": "directional",
        "feature": test.feature,
        "passed": len(bad) == 0,
        "detail": f"raising {test.feature} by {step:g}: the score went the wrong way in"
        f" {len(bad)} of {len(x)} rows (expected {test.direction})",
        "offending_rows": _offending(x, delta, bad),
    }


def _minimum(test, model, rows, schema, labels, threshold=None) -> dict[str, Any]:
    mask = np.ones(len(rows), dtype=bool)
    for column, value in test.where.items():
        mask &= (rows[column].astype(str) == str(value)).to_numpy()
    name = ", ".join(f"{k}={v}" for k, v in test.where.items())
    if not mask.any():
        return {
            "kind": "minimum",
            "slice": name,
            "passed": False,
            "offending_rows": [],
            "detail": f"no test rows where {name}",
        }
    part = rows.loc[mask]
    predictions, proba, classes = predict_with(
        model, part[schema.feature_names], labels.task, threshold, labels.positive_class
    )
    y = part[schema.target].to_numpy()
    value = compute_metrics(labels.task, y, predictions, proba, classes, labels.positive_class).get(
        test.metric, float("nan")
    )
    lower_is_better = not greater_is_better(test.metric)
    passed = value <= test.min if lower_is_better else value >= test.min
    relation = "≤" if lower_is_better else "≥"
    return {
        "kind": "minimum",
        "slice": name,
        "passed": bool(passed),
        "detail": f"{test.metric} = {value:.4f} on {int(mask.sum())} rows (required {relation}"
        f" {test.min})",
        "offending_rows": [],
    }
