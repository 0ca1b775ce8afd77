"""Judging the chosen model: test metrics with intervals, the baseline gate, CV, threshold."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.base import clone

from keel.data import LabelInfo, Schema, Splits
from keel.estimators import decides_itself
from keel.evaluation import (
    GateResult,
    Interval,
    baseline_gate,
    encode_labels,
    metric_intervals,
    paired_difference,
)
from keel.families.tabular.training._candidates import (
    BASELINES,
    TrainedCandidate,
    predict_with,
    select_best,
)
from keel.families.tabular.training._curves import (
    FEW_FRACTIONS,
    FRACTIONS,
    LARGE_FIT_SECONDS,
    learning_curve,
)
from keel.families.tabular.training._slices import slice_report, worst_rows
from keel.families.tabular.training._tuning import cross_validate, summarize_folds
from keel.tasks import compute_metrics, fast_metrics


@dataclass
class Assessment:
    """Everything said about the chosen model, with the numbers behind it."""

    test_metrics: dict[str, float]
    intervals: dict[str, Interval]
    gate: GateResult | None
    cross_validation: dict[str, dict[str, float]]
    threshold: dict[str, Any] = field(default_factory=dict)
    slices: list[dict[str, Any]] = field(default_factory=list)
    worst: Any = None  # DataFrame of the worst-predicted test rows
    diagnostics: dict[str, Any] = field(default_factory=dict)
    final_pipeline: Any = None  # the chosen model refitted on train + validation
    refit_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "test_metrics": self.test_metrics,
            "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "gate": None if self.gate is None else self.gate.to_dict(),
            "cross_validation": self.cross_validation,
            "threshold": self.threshold,
            "diagnostics": self.diagnostics,
            "refit_rows": self.refit_rows,
            "slices": self.slices,
            "flagged_slices": [s for s in self.slices if s["flagged"]],
        }


def _primary_on_rows(task, metric, y, predictions, proba, classes, positive):
    # class labels as integer codes: hundreds of resamples compare them
    y, predictions, classes, positive = encode_labels(
        np.asarray(y), np.asarray(predictions), classes, positive
    )

    def compute(rows: np.ndarray) -> float:
        values = fast_metrics(
            task,
            y[rows],
            predictions[rows],
            None if proba is None else proba[rows],
            classes,
            positive,
        )
        return values.get(metric, float("nan"))

    return compute


def _decision_threshold(
    best: TrainedCandidate,
    final: Any,
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    objective: str,
    mitigated: bool,
) -> tuple[dict[str, Any], float | None]:
    """The threshold document and the cut the shipped model predicts with (or none)."""
    if mitigated and decides_itself(final):
        return {
            "objective": "none",
            "value": None,
            "note": "the mitigated model decides each row itself (randomised as fairlearn"
            " prescribes, with a coin fixed by the row's values); no global threshold"
            " applies, and its probabilities are a score, not the decision",
        }, None
    if labels.kind.thresholded and objective != "none":
        threshold = choose_threshold(best, splits, schema, labels, objective)
        return threshold, threshold["value"]
    return {}, None


def _gate_against_baseline(
    best: TrainedCandidate,
    trained: Sequence[TrainedCandidate],
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    shipped: tuple[Any, Any, Any, Any],
    options: tuple[bool, int, int, float],
) -> dict[str, Any] | None:
    """The chosen model against the best other baseline, on the same test resamples.

    ``shipped`` is (test truth, predictions, probabilities, classes) of the shipped
    model; ``options`` is (refit, resamples, seed, margin).
    """
    spec = labels.primary
    others = [c for c in trained if c.name in BASELINES and c.name != best.name]
    if not others:
        return None
    refit, resamples, seed, margin = options
    y_test, predictions, proba, classes = shipped
    baseline = select_best(others, spec)
    compared = (
        refit_on_train_and_validation(baseline.pipeline, splits, schema, labels)
        if refit
        else baseline.pipeline
    )
    x_test = splits.test[schema.feature_names]
    b_pred, b_proba, b_classes = predict_with(compared, x_test, labels.task)
    positive = labels.positive_class
    difference = paired_difference(
        _primary_on_rows(labels.task, spec.name, y_test, predictions, proba, classes, positive),
        _primary_on_rows(labels.task, spec.name, y_test, b_pred, b_proba, b_classes, positive),
        len(y_test),
        resamples,
        seed,
    )
    return baseline_gate(
        spec.name, spec.greater_is_better, best.name, baseline.name, difference, margin
    )


def _diagnostics(
    best: TrainedCandidate,
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    shipped: tuple[Any, Any, Any, Any],
    seed: int,
) -> dict[str, Any]:
    y_test, predictions, proba, classes = shipped
    diagnostics = diagnose(labels, y_test, predictions, proba, classes)
    large = best.fit_seconds > LARGE_FIT_SECONDS
    diagnostics["learning_curve"] = learning_curve(
        clone(best.pipeline),
        splits,
        schema,
        labels,
        seed,
        full_model=best.pipeline,
        fractions=FEW_FRACTIONS if large else FRACTIONS,
    )
    return diagnostics


def assess(
    best: TrainedCandidate,
    trained: Sequence[TrainedCandidate],
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    *,
    cv_folds: int = 5,
    seed: int = 0,
    margin: float = 0.0,
    resamples: int = 300,
    sensitive: Sequence[str] = (),
    time_column: str | None = None,
    group_column: str | None = None,
    refit: bool = True,
    threshold_objective: str = "f1",
    fold_metrics: Sequence[dict[str, float]] = (),
    fit_final: FitFinal | None = None,
) -> Assessment:
    """Test metrics with 95 % bootstrap intervals, the baseline gate, CV and threshold.

    With ``refit`` the chosen model — and the baseline it is compared with — are fitted
    again, with the same hyper-parameters, on train + validation: the validation rows
    have done their job (choosing), and the model that ships learns from them too. The
    test rows stay untouched. ``fit_final`` fits the shipped model instead of a plain
    ``fit`` (bias mitigation); the baseline is still fitted plainly. The gate compares
    the chosen model with the best *other* baseline (chosen on validation) on the same
    bootstrap resamples of the test rows: it passes when the whole interval of the
    improvement clears ``margin``.
    """
    x_test = splits.test[schema.feature_names]
    y_test = labels.kind.truth(splits.test[schema.target])
    final = (
        refit_on_train_and_validation(best.pipeline, splits, schema, labels, fit_final)
        if refit
        else best.pipeline
    )
    threshold, cut = _decision_threshold(
        best, final, splits, schema, labels, threshold_objective, fit_final is not None
    )
    predictions, proba, classes = predict_with(
        final, x_test, labels.task, cut, labels.positive_class
    )
    if cut is not None:
        threshold["test_at_0.5"] = _threshold_metrics(
            y_test == labels.positive_class, proba[:, classes.index(labels.positive_class)] > 0.5
        )
    test_metrics = compute_metrics(
        labels.task, y_test, predictions, proba, classes, labels.positive_class
    )
    intervals = metric_intervals(
        labels.kind.metrics,
        y_test,
        predictions,
        proba,
        classes,
        labels.positive_class,
        resamples,
        seed,
    )
    shipped = (y_test, predictions, proba, classes)
    gate = _gate_against_baseline(
        best, trained, splits, schema, labels, shipped, (refit, resamples, seed, margin)
    )
    # the tuner already cross-validated these very parameters on these very folds
    folds = list(fold_metrics) or cross_validate(
        clone(best.pipeline),
        splits.train,
        schema,
        labels,
        cv_folds,
        seed,
        time_column=time_column,
        group_column=group_column,
    )
    slices = slice_report(
        splits.test, predictions, proba, classes, schema, labels, sensitive=sensitive
    )
    worst = worst_rows(splits.test, predictions, proba, classes, schema, labels)
    return Assessment(
        test_metrics,
        intervals,
        gate,
        summarize_folds(folds),
        threshold,
        slices,
        worst,
        _diagnostics(best, splits, schema, labels, shipped, seed),
        final,
        len(splits.train) + len(splits.validation) if refit else len(splits.train),
    )


FitFinal = Callable[[Any, pd.DataFrame], Any]
"""(unfitted pipeline, rows with features and target) → the fitted model to ship.

How bias mitigation fits a model (``keel.families.tabular.responsible.mitigation_fitter``)."""


def refit_on_train_and_validation(
    pipeline: Any,
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    fit_final: FitFinal | None = None,
):
    """A fresh copy of ``pipeline`` (same hyper-parameters) fitted on train + validation."""
    return _refit(pipeline, [splits.train, splits.validation], schema, labels, fit_final)


def refit_on_all_rows(
    pipeline: Any,
    splits: Splits,
    schema: Schema,
    labels: LabelInfo,
    fit_final: FitFinal | None = None,
):
    """A fresh copy of ``pipeline`` fitted on every row: train, validation and test.

    For ``final_fit: all_rows``: the model that ships has seen the test rows, so the
    test metrics describe its sibling fitted on train + validation (same
    hyper-parameters, fewer rows) — a conservative estimate, and said so in the report.
    """
    return _refit(
        pipeline, [splits.train, splits.validation, splits.test], schema, labels, fit_final
    )


def _refit(
    pipeline: Any,
    parts: list,
    schema: Schema,
    labels: LabelInfo,
    fit_final: FitFinal | None = None,
):
    rows = pd.concat(parts, ignore_index=True)
    y = labels.kind.truth(rows[schema.target])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        if fit_final is not None:
            return fit_final(pipeline, rows)
        return clone(pipeline).fit(rows[schema.feature_names], y)


def diagnose(labels, y_test, predictions, proba, classes) -> dict[str, Any]:
    """Return plot-ready diagnostics of the chosen model on the test rows.

    Calibration curve (binary), confusion matrix and per-class report (classification),
    residuals by predicted decile (regression).
    """
    return labels.kind.diagnostics(y_test, predictions, proba, classes, labels.positive_class)


THRESHOLD_OBJECTIVES: tuple[str, ...] = ("f1", "balanced_accuracy", "accuracy", "none")


def choose_threshold(best, splits, schema, labels, objective: str = "f1") -> dict[str, Any]:
    """The decision threshold maximising ``objective`` on the validation rows.

    Chosen with the model fitted on the train split only (validation rows unseen). The
    shipped model then decides "positive" when P(positive) reaches it — in the test
    metrics and in serving alike.
    """
    if objective not in THRESHOLD_OBJECTIVES[:-1]:
        raise ValueError(f"threshold objective must be one of {THRESHOLD_OBJECTIVES[:-1]}")
    positive = labels.positive_class
    _, val_proba, classes = predict_with(
        best.pipeline, splits.validation[schema.feature_names], "binary"
    )
    y_val = splits.validation[schema.target].to_numpy() == positive
    score = val_proba[:, list(classes).index(positive)]
    cut, value = 0.5, float("nan")
    if objective == "f1":
        precision, recall, cuts = skm.precision_recall_curve(y_val, score)
        f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
        if len(cuts):
            k = int(np.nanargmax(f1[:-1]))
            cut, value = float(cuts[k]), float(f1[k])
    else:
        fpr, tpr, cuts = skm.roc_curve(y_val, score)
        finite = np.isfinite(cuts)
        if objective == "balanced_accuracy":
            values = (tpr + 1 - fpr) / 2
        else:
            values = (tpr * y_val.sum() + (1 - fpr) * (~y_val).sum()) / max(len(y_val), 1)
        if finite.any():
            k = int(np.argmax(np.where(finite, values, -np.inf)))
            cut, value = float(cuts[k]), float(values[k])
    return {"objective": objective, "value": cut, "validation_score": value}


def _threshold_metrics(truth: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    return {
        "precision": float(skm.precision_score(truth, decided, zero_division=0)),
        "recall": float(skm.recall_score(truth, decided, zero_division=0)),
        "f1": float(skm.f1_score(truth, decided, zero_division=0)),
        "accuracy": float(skm.accuracy_score(truth, decided)),
    }
