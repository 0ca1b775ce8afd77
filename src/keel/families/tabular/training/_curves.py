"""Learning curves: train and validation score over training size, with a diagnosis."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import clone

from keel.data import LabelInfo, Schema, Splits
from keel.families.tabular.training._candidates import predict_with

FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
# for a model that takes more than LARGE_FIT_SECONDS to fit: three points, 0.75 of a
# full fit in all instead of 1.6 (the shape and the diagnosis need only these)
FEW_FRACTIONS = (0.25, 0.5, 1.0)
LARGE_FIT_SECONDS = 1.0
# the train score of a point is measured on at most this many of its rows (a seeded
# sample): predicting every training row of a large ensemble costs seconds per point
TRAIN_SCORE_ROWS = 5000
VARIANCE_GAP = 0.05
STILL_LEARNING = 0.01


def _score(model: Any, frame, schema: Schema, labels: LabelInfo) -> float:
    predictions, proba, classes = predict_with(model, frame[schema.feature_names], labels.task)
    y = labels.kind.truth(frame[schema.target])
    values = labels.kind.metrics.fast(y, predictions, proba, classes, labels.positive_class)
    return values.get(labels.primary.name, float("nan"))


def learning_curve(
    pipeline: Any,
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    seed: int = 0,
    full_model: Any = None,
    fractions: tuple[float, ...] = FRACTIONS,
) -> dict[str, Any]:
    """Fit on growing shares of the training rows; score on them and on validation.

    ``full_model``, when given, is ``pipeline`` already fitted on all training rows
    (the last point). The diagnosis compares the last point: a train score far above
    validation is high variance; train and validation close together and still rising
    means more data would help; close together and flat is high bias only when it is no
    better than the first point (the model learns nothing more from more data).
    """
    spec = labels.primary
    sign = 1.0 if spec.greater_is_better else -1.0
    order = np.random.default_rng(seed).permutation(len(splits.train))
    points = []
    for fraction in fractions:
        rows = order[: max(20, round(fraction * len(order)))]
        part = splits.train.iloc[np.sort(rows)]
        if labels.kind.stratified and part[schema.target].nunique() < 2:
            continue
        if fraction == 1.0 and full_model is not None:
            model = full_model  # already fitted on exactly these rows: no need to refit
        else:
            model = clone(pipeline)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(part[schema.feature_names], labels.kind.truth(part[schema.target]))
        points.append(
            {
                "fraction": fraction,
                "rows": len(part),
                "train": _score(model, _at_most(part, TRAIN_SCORE_ROWS, seed), schema, labels),
                "validation": _score(model, splits.validation, schema, labels),
            }
        )
    if len(points) < 2:
        return {"metric": spec.name, "points": points, "diagnosis": "too little data to say"}
    last, before, first = points[-1], points[-2], points[0]
    gap = sign * (last["train"] - last["validation"])
    scale = max(abs(last["validation"]), 1e-12) if not spec.greater_is_better else 1.0
    rising = sign * (last["validation"] - before["validation"]) / scale
    gained = sign * (last["validation"] - first["validation"]) / scale
    if gap / scale > VARIANCE_GAP:
        diagnosis = (
            f"high variance: train {spec.name} {last['train']:.4f} vs validation"
            f" {last['validation']:.4f}; more data or more regularisation should help"
        )
    elif rising > STILL_LEARNING:
        diagnosis = (
            "fine, and still learning: validation improves with more rows; more data would help"
        )
    elif gained <= STILL_LEARNING:
        diagnosis = (
            "high bias: more rows do not help and train ≈ validation;"
            " try a richer model or better features"
        )
    else:
        diagnosis = "fine: train and validation agree and the curve has flattened"
    return {"metric": spec.name, "points": points, "diagnosis": diagnosis}


def _at_most(frame: Any, rows: int, seed: int) -> Any:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)
