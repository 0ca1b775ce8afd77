"""Where the model fails: metrics per slice, worst slices flagged, worst rows kept."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from keel.data import LabelInfo, Schema

MIN_SLICE_ROWS = 30
FLAG_GAP = 0.05


def _slices(frame: pd.DataFrame, schema: Schema, sensitive: Sequence[str]):
    for column in schema.features:
        series = frame[column.name]
        if column.kind in ("string", "boolean"):
            for value in series.dropna().unique():
                yield column.name, str(value), (series == value).to_numpy()
            if series.isna().any():
                yield column.name, "(missing)", series.isna().to_numpy()
        elif column.name in sensitive:
            # numeric sensitive features (age) in quartiles
            edges = np.unique(np.nanquantile(series.astype(float), [0, 0.25, 0.5, 0.75, 1]))
            for low, high in itertools.pairwise(edges):
                last = high == edges[-1]
                mask = (series >= low) & ((series <= high) if last else (series < high))
                yield column.name, f"[{low:g}, {high:g}{']' if last else ')'}", mask.to_numpy()


def slice_report(
    frame: pd.DataFrame,
    predictions: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[str],
    schema: Schema,
    labels: LabelInfo,
    sensitive: Sequence[str] = (),
    min_rows: int = MIN_SLICE_ROWS,
) -> list[dict[str, Any]]:
    """Metrics of every value of every categorical feature (and binned sensitive ones).

    A slice is flagged when it has at least ``min_rows`` rows and its accuracy (MAE
    for regression) is worse than on all rows by more than 5 points (5 %). Smaller
    slices are reported, not judged. Worst first.
    """
    task = labels.kind
    y = task.truth(frame[schema.target])
    metric = task.slice_metric
    overall = task.metrics.fast(y, predictions, proba, classes, labels.positive_class)
    primary = labels.primary.name
    rows = []
    for feature, value, mask in _slices(frame, schema, sensitive):
        n = int(mask.sum())
        if n == 0:
            continue
        values = task.metrics.fast(
            y[mask],
            predictions[mask],
            None if proba is None else proba[mask],
            classes,
            labels.positive_class,
        )
        gap = task.slice_gap(values[metric], overall[metric])
        rows.append(
            {
                "feature": feature,
                "value": value,
                "rows": n,
                metric: values.get(metric),
                primary: values.get(primary),
                "gap": round(float(gap), 6),
                "judged": n >= min_rows,
                "flagged": n >= min_rows and gap > FLAG_GAP,
            }
        )
    return sorted(rows, key=lambda r: (not r["flagged"], -r["gap"]))


def worst_rows(
    frame: pd.DataFrame,
    predictions: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[str],
    schema: Schema,
    labels: LabelInfo,
    n: int = 50,
) -> pd.DataFrame:
    """The ``n`` test rows the model got most wrong, with their features.

    Classification: lowest probability given to the true class; regression: largest
    absolute error. Only model features, the target and the prediction are kept.
    """
    y = frame[schema.target].to_numpy()
    out = frame[schema.feature_names].copy()
    out[schema.target] = y
    out["prediction"] = predictions
    order = labels.kind.worst(out, y, predictions, proba, classes)
    return out.iloc[order[:n]].reset_index(drop=True)
