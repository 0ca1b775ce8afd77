"""Monitoring: drift, skew, performance and fairness over the prediction log; alerts.

Names are imported on first use (PEP 562): `keel drift` needs the drift statistics,
not the registry, the prediction log or the alert sinks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load on first use
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
    from keel.monitoring._monitor import (
        MONITORING_REFERENCE,
        MonitorReport,
        Window,
        cut_windows,
        log_frame,
        monitor,
        monitor_chunks,
    )
    from keel.monitoring._reference import (
        CategoricalReference,
        DriftReference,
        NumericReference,
        is_numeric,
        package_references,
    )

_WHERE = {
    "CHUNK_MAX_DISTINCT": ("keel.monitoring._chunks", "CHUNK_MAX_DISTINCT"),
    "CategoricalReference": ("keel.monitoring._reference", "CategoricalReference"),
    "ColumnDrift": ("keel.monitoring._drift", "ColumnDrift"),
    "DriftReference": ("keel.monitoring._reference", "DriftReference"),
    "DriftReport": ("keel.monitoring._drift", "DriftReport"),
    "DriftThresholds": ("keel.monitoring._drift", "DriftThresholds"),
    "MONITORING_REFERENCE": ("keel.monitoring._monitor", "MONITORING_REFERENCE"),
    "MonitorReport": ("keel.monitoring._monitor", "MonitorReport"),
    "NumericReference": ("keel.monitoring._reference", "NumericReference"),
    "Window": ("keel.monitoring._monitor", "Window"),
    "categorical_drift": ("keel.monitoring._drift", "categorical_drift"),
    "chunk_reference": ("keel.monitoring._chunks", "chunk_reference"),
    "column_drift": ("keel.monitoring._drift", "column_drift"),
    "crosses": ("keel.monitoring._alerts", "crosses"),
    "cut_windows": ("keel.monitoring._monitor", "cut_windows"),
    "deliver": ("keel.monitoring._alerts", "deliver"),
    "drift_report": ("keel.monitoring._drift", "drift_report"),
    "evaluate": ("keel.monitoring._alerts", "evaluate"),
    "failure_alert": ("keel.monitoring._alerts", "failure_alert"),
    "is_numeric": ("keel.monitoring._reference", "is_numeric"),
    "kinds_of": ("keel.monitoring._chunks", "kinds_of"),
    "ks_and_wasserstein": ("keel.monitoring._drift", "ks_and_wasserstein"),
    "load_state": ("keel.monitoring._alerts", "load_state"),
    "log_frame": ("keel.monitoring._monitor", "log_frame"),
    "monitor": ("keel.monitoring._monitor", "monitor"),
    "monitor_chunks": ("keel.monitoring._monitor", "monitor_chunks"),
    "numeric_drift": ("keel.monitoring._drift", "numeric_drift"),
    "package_references": ("keel.monitoring._reference", "package_references"),
    "post_json": ("keel.monitoring._alerts", "post_json"),
    "reference_of_file": ("keel.monitoring._chunks", "reference_of_file"),
    "render_dashboard": ("keel.monitoring._dashboard", "render_dashboard"),
    "save_state": ("keel.monitoring._alerts", "save_state"),
    "shown_url": ("keel.monitoring._alerts", "shown_url"),
    "state_path": ("keel.monitoring._alerts", "state_path"),
    "table_chunks": ("keel.monitoring._chunks", "table_chunks"),
    "total_rows": ("keel.monitoring._chunks", "total_rows"),
}


__getattr__ = _lazy_getattr(__name__, _WHERE, globals())

__all__ = [
    "CHUNK_MAX_DISTINCT",
    "MONITORING_REFERENCE",
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
    "monitor_chunks",
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
