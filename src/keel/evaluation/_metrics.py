"""Metrics by task. Pure functions of labels, predictions and probabilities."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm


@dataclass(frozen=True)
class MetricSpec:
    """How to read a metric: its name and whether higher is better."""

    name: str
    greater_is_better: bool


BINARY_DIRECTIONS = {
    "roc_auc": True,
    "average_precision": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "log_loss": False,
    "brier": False,
}
MULTICLASS_DIRECTIONS = {
    "f1_macro": True,
    "f1_weighted": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "roc_auc_ovr": True,
    "log_loss": False,
}
REGRESSION_DIRECTIONS = {"rmse": False, "mae": False, "median_ae": False, "r2": True, "mape": False}


def binary_metrics(
    y_true: Sequence,
    y_pred: Sequence,
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
) -> dict[str, float]:
    """Metrics of binary decisions and of P(``positive_class``) (columns of ``classes``).

    A metric that is undefined on these rows (one class only, say) is left out rather
    than reported as a made-up number.
    """
    y_true, y_pred = _rows(y_true, y_pred)
    out = _label_metrics(y_true, y_pred)
    out["precision"] = skm.precision_score(
        y_true, y_pred, pos_label=positive_class, zero_division=0
    )
    out["recall"] = skm.recall_score(y_true, y_pred, pos_label=positive_class, zero_division=0)
    out["f1"] = skm.f1_score(y_true, y_pred, pos_label=positive_class, zero_division=0)
    if proba is not None and len(np.unique(y_true)) == 2:
        column = list(classes).index(positive_class)
        score = proba[:, column]
        positive = y_true == positive_class
        out["roc_auc"] = skm.roc_auc_score(positive, score)
        out["average_precision"] = skm.average_precision_score(positive, score)
        out["log_loss"] = skm.log_loss(positive, score, labels=[False, True])
        out["brier"] = skm.brier_score_loss(positive, score)
    return _finite(out)


def multiclass_metrics(
    y_true: Sequence,
    y_pred: Sequence,
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
) -> dict[str, float]:
    """Metrics of multiclass labels and of the class probabilities (columns of ``classes``)."""
    y_true, y_pred = _rows(y_true, y_pred)
    out = _label_metrics(y_true, y_pred)
    out["f1_macro"] = skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    out["f1_weighted"] = skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)
    if proba is not None:
        out["log_loss"] = skm.log_loss(y_true, proba, labels=list(classes))
        present = np.isin(np.asarray(classes), np.unique(y_true))
        if present.all():
            out["roc_auc_ovr"] = skm.roc_auc_score(
                y_true, proba, multi_class="ovr", labels=list(classes)
            )
    return _finite(out)


def regression_metrics(
    y_true: Sequence,
    y_pred: Sequence,
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
) -> dict[str, float]:
    """Errors of predicted values (``proba``, ``classes`` and ``positive_class`` unused)."""
    y_true, y_pred = _rows(y_true, y_pred)
    return _regression(y_true.astype(float), y_pred.astype(float))


def _rows(y_true: Sequence, y_pred: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero rows")
    return y_true, y_pred


def _label_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": _quiet(skm.balanced_accuracy_score, y_true, y_pred),
    }


def _finite(out: dict[str, float | None]) -> dict[str, float]:
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def _regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    out = {
        "rmse": math.sqrt(skm.mean_squared_error(y_true, y_pred)),
        "mae": skm.mean_absolute_error(y_true, y_pred),
        "median_ae": skm.median_absolute_error(y_true, y_pred),
    }
    if len(y_true) > 1 and np.var(y_true) > 0:
        out["r2"] = skm.r2_score(y_true, y_pred)
    nonzero = np.abs(y_true) > 1e-12
    # MAPE only over rows whose truth is not zero (a zero makes it infinite), and only
    # when those rows are most of the data; the share used is part of the name's doc.
    if nonzero.mean() >= 0.9:
        out["mape"] = float(np.mean(np.abs((y_true - y_pred)[nonzero] / y_true[nonzero])))
    return {k: float(v) for k, v in out.items()}


def _quiet(fn, *args):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def is_better(spec: MetricSpec, candidate: float, incumbent: float | None) -> bool:
    """Whether ``candidate`` beats ``incumbent`` on the metric ``spec``."""
    if incumbent is None or math.isnan(incumbent):
        return True
    return candidate > incumbent if spec.greater_is_better else candidate < incumbent


@dataclass(frozen=True)
class MetricSet:
    """The metrics of one kind of model: exact (scikit-learn) and fast (NumPy) versions.

    ``exact`` and ``fast`` take ``(y_true, y_pred, proba, classes, positive_class)``;
    ``directions`` says for each metric whether higher is better; ``default`` is the
    primary metric when ``metric:`` is not configured.
    """

    exact: Callable[..., dict[str, float]]
    fast: Callable[..., dict[str, float]]
    directions: dict[str, bool]
    default: str

    def spec(self, name: str | None = None) -> MetricSpec:
        """The primary metric: ``name`` when given, else the default.

        Raises ``ValueError`` naming the known metrics when ``name`` is not one.
        """
        name = name or self.default
        if name not in self.directions:
            raise ValueError(f"metric {name!r} is not one of {', '.join(self.directions)}")
        return MetricSpec(name, self.directions[name])


def decide(
    proba: np.ndarray, classes: Sequence[str], positive_class: str, threshold: float
) -> np.ndarray:
    """Binary decisions: ``positive_class`` where its probability reaches ``threshold``.

    The one rule shared by evaluation and serving, so that reported metrics describe
    exactly the answers the server gives.
    """
    classes = list(classes)
    column = classes.index(positive_class)
    negative = classes[1 - column]
    return np.where(proba[:, column] >= threshold, positive_class, negative)
