"""Bootstrap confidence intervals, and the paired comparison behind the baseline gate."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.evaluation._metrics import MetricSet

DEFAULT_RESAMPLES = 300
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        """JSON form."""
        return {"value": self.value, "low": self.low, "high": self.high}


def encode_labels(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[Any],
    positive_class: Any,
) -> tuple[np.ndarray, np.ndarray, list[int], int | None]:
    """Class labels as integer codes (one vocabulary for all four), for resampling.

    Comparing object arrays of strings is slow: the hundreds of resamples of a
    bootstrap compare codes instead. Every metric depends on labels only through
    equality, so the values are the same. Numeric labels are returned unchanged.
    """
    if y_true.dtype.kind in "iufb" and y_pred.dtype.kind in "iufb":
        return y_true, y_pred, list(classes), positive_class
    vocabulary = {
        label: code
        for code, label in enumerate(
            dict.fromkeys([*map(str, classes), *map(str, np.unique(y_true.astype(str)))])
        )
    }
    for label in np.unique(y_pred.astype(str)):
        vocabulary.setdefault(str(label), len(vocabulary))
    if positive_class is not None:
        vocabulary.setdefault(str(positive_class), len(vocabulary))

    def codes(values: np.ndarray) -> np.ndarray:
        return np.array([vocabulary[str(v)] for v in values], dtype=np.int64)

    return (
        codes(y_true),
        codes(y_pred),
        [vocabulary[str(c)] for c in classes],
        None if positive_class is None else vocabulary[str(positive_class)],
    )


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def metric_intervals(
    metrics: MetricSet,
    y_true: Sequence,
    y_pred: Sequence,
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Interval]:
    """95 % percentile bootstrap interval of every metric of ``metrics`` on these rows.

    Rows are resampled with replacement ``resamples`` times (seeded); a metric that
    is undefined on a resample (one class only) is skipped for that resample.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    point = metrics.exact(y_true, y_pred, proba, classes, positive_class)
    samples: dict[str, list[float]] = {name: [] for name in point}
    true_codes, pred_codes, class_codes, positive = encode_labels(
        y_true, y_pred, classes, positive_class
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rows in _resample_indices(len(y_true), resamples, seed):
            values = metrics.fast(
                true_codes[rows],
                pred_codes[rows],
                None if proba is None else proba[rows],
                class_codes,
                positive,
            )
            for name, value in values.items():
                if name in samples:
                    samples[name].append(value)
    return {name: _interval(point[name], samples[name]) for name in point}


def _interval(value: float, samples: list[float]) -> Interval:
    if not samples:
        return Interval(value, float("nan"), float("nan"))
    alpha = (1.0 - CONFIDENCE) / 2
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return Interval(float(value), float(low), float(high))


@dataclass(frozen=True)
class GateResult:
    """Whether the chosen model beat the best baseline by the margin, on the interval."""

    passed: bool
    metric: str
    model: str
    baseline: str
    difference: Interval
    margin: float
    greater_is_better: bool = True

    def describe(self) -> str:
        """One line for people."""
        verdict = "passed" if self.passed else "FAILED"
        d = self.difference
        better = "higher" if self.greater_is_better else "lower"
        return (
            f"baseline gate {verdict}: {self.model} vs best baseline {self.baseline} on test"
            f" {self.metric}: difference {d.value:+.4f} (95% CI {d.low:+.4f} to {d.high:+.4f},"
            f" {better} is better), required margin {self.margin:g}"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "passed": self.passed,
            "metric": self.metric,
            "model": self.model,
            "baseline": self.baseline,
            "difference": self.difference.to_dict(),
            "margin": self.margin,
        }


def paired_difference(
    metric: Callable[[np.ndarray], float],
    other: Callable[[np.ndarray], float],
    n: int,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Interval of ``metric(rows) - other(rows)`` over the same bootstrap resamples."""
    everything = np.arange(n)
    point = metric(everything) - other(everything)
    samples = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rows in _resample_indices(n, resamples, seed):
            a, b = metric(rows), other(rows)
            if math.isfinite(a) and math.isfinite(b):
                samples.append(a - b)
    return _interval(point, samples)


def baseline_gate(
    metric_name: str,
    greater_is_better: bool,
    model_name: str,
    baseline_name: str,
    difference: Interval,
    margin: float,
) -> GateResult:
    """Pass when the whole interval of the improvement clears the margin.

    For a metric where higher is better the lower bound of (model − baseline) must
    exceed ``margin``; where lower is better the upper bound must be below −margin.
    """
    passed = difference.low > margin if greater_is_better else difference.high < -margin
    return GateResult(
        passed, metric_name, model_name, baseline_name, difference, margin, greater_is_better
    )
