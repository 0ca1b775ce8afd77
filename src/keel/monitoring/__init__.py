"""Monitoring: drift, skew, performance and fairness over the prediction log; alerts."""

from keel.monitoring._alerts import (
    crosses,
    deliver,
    evaluate,
    failure_alert,
    load_state,
    post_json,
    save_state,
    shown_url,
    state_path,
)
from keel.monitoring._chunks import (
    CHUNK_MAX_DISTINCT,
    chunk_reference,
    kinds_of,
    reference_of_file,
    table_chunks,
    total_rows,
)
from keel.monitoring._dashboard import render_dashboard
from keel.monitoring._drift import (
    ColumnDrift,
    DriftReport,
    DriftThresholds,
    categorical_drift,
    column_drift,
    drift_report,
    ks_and_wasserstein,
    numeric_drift,
)
from keel.monitoring._monitor import MonitorReport, Window, cut_windows, log_frame, monitor
from keel.monitoring._reference import (
    CategoricalReference,
    DriftReference,
    NumericReference,
    is_numeric,
    package_references,
)

__all__ = [
    "CHUNK_MAX_DISTINCT",
    "CategoricalReference",
    "ColumnDrift",
    "DriftReference",
    "DriftReport",
    "DriftThresholds",
    "MonitorReport",
    "NumericReference",
    "Window",
    "categorical_drift",
    "chunk_reference",
    "column_drift",
    "crosses",
    "cut_windows",
    "deliver",
    "drift_report",
    "evaluate",
    "failure_alert",
    "is_numeric",
    "kinds_of",
    "ks_and_wasserstein",
    "load_state",
    "log_frame",
    "monitor",
    "numeric_drift",
    "package_references",
    "post_json",
    "reference_of_file",
    "render_dashboard",
    "save_state",
    "shown_url",
    "state_path",
    "table_chunks",
    "total_rows",
]
