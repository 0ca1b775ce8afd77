"""Monitoring: drift between a reference and what the model sees now."""

from keel.monitoring._drift import (
    ColumnDrift,
    DriftReport,
    DriftThresholds,
    categorical_drift,
    drift_report,
    ks_and_wasserstein,
    numeric_drift,
)

__all__ = [
    "ColumnDrift",
    "DriftReport",
    "DriftThresholds",
    "categorical_drift",
    "drift_report",
    "ks_and_wasserstein",
    "numeric_drift",
]
