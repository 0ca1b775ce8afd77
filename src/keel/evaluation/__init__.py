"""Evaluation: metrics, bootstrap intervals, the baseline gate (pure).

Metrics come in sets, one per kind of model (:class:`MetricSet`: exact scikit-learn
functions, their NumPy twins for bootstrap resamples, directions, a default). This
layer knows no task names: :mod:`keel.tasks` picks the set of each task.
"""

from keel.evaluation._bootstrap import (
    GateResult,
    Interval,
    baseline_gate,
    encode_labels,
    metric_intervals,
    paired_difference,
)
from keel.evaluation._ensemble import Selection, ensemble_selection
from keel.evaluation._fast import fast_binary, fast_multiclass, fast_regression
from keel.evaluation._metrics import (
    BINARY_DIRECTIONS,
    MULTICLASS_DIRECTIONS,
    REGRESSION_DIRECTIONS,
    MetricSet,
    MetricSpec,
    binary_metrics,
    decide,
    is_better,
    multiclass_metrics,
    regression_metrics,
)

__all__ = [
    "BINARY_DIRECTIONS",
    "MULTICLASS_DIRECTIONS",
    "REGRESSION_DIRECTIONS",
    "GateResult",
    "Interval",
    "MetricSet",
    "MetricSpec",
    "Selection",
    "baseline_gate",
    "binary_metrics",
    "decide",
    "encode_labels",
    "ensemble_selection",
    "fast_binary",
    "fast_multiclass",
    "fast_regression",
    "is_better",
    "metric_intervals",
    "multiclass_metrics",
    "paired_difference",
    "regression_metrics",
]
