"""Pipeline: the stage runner that wires ingest → … → register and tracks it in MLflow."""

from keel.pipeline._cards import write_model_card
from keel.pipeline._check import Checklist, GateResult, check_version
from keel.pipeline._monitoring import (
    MONITOR_TAG,
    package_reference,
    recent_alerts,
    retrain,
    run_monitor,
)
from keel.pipeline._report import (
    atomic_write,
    render_drift_html,
    render_html,
    render_validation_html,
    write_drift_report,
    write_reports,
    write_validation_report,
)
from keel.pipeline._reproduce import Reproduction, reproduce
from keel.pipeline._run import STAGES, RunResult, git_commit, run_project

__all__ = [
    "MONITOR_TAG",
    "STAGES",
    "Checklist",
    "GateResult",
    "Reproduction",
    "RunResult",
    "atomic_write",
    "check_version",
    "git_commit",
    "package_reference",
    "recent_alerts",
    "render_drift_html",
    "render_html",
    "render_validation_html",
    "reproduce",
    "retrain",
    "run_monitor",
    "run_project",
    "write_drift_report",
    "write_model_card",
    "write_reports",
    "write_validation_report",
]
