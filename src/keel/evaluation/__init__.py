"""Evaluation: metrics by task (pure; imports no other Keel layer)."""

from keel.evaluation._metrics import PRIMARY_METRIC, MetricSpec, compute_metrics, is_better

__all__ = ["PRIMARY_METRIC", "MetricSpec", "compute_metrics", "is_better"]
