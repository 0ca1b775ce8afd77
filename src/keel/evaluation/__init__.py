"""Evaluation: metrics by task, bootstrap intervals, the baseline gate (pure)."""

from keel.evaluation._bootstrap import (
    GateResult,
    Interval,
    baseline_gate,
    metric_intervals,
    paired_difference,
)
from keel.evaluation._fast import fast_metrics
from keel.evaluation._metrics import (
    METRICS,
    PRIMARY_METRIC,
    MetricSpec,
    compute_metrics,
    decide,
    greater_is_better,
    is_better,
    metric_spec,
)

__all__ = [
    "METRICS",
    "PRIMARY_METRIC",
    "GateResult",
    "Interval",
    "MetricSpec",
    "baseline_gate",
    "compute_metrics",
    "decide",
    "fast_metrics",
    "greater_is_better",
    "is_better",
    "metric_intervals",
    "metric_spec",
    "paired_difference",
]
