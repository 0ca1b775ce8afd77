"""Pipeline: the stage runner that wires ingest → … → register and tracks it in MLflow."""

from keel.pipeline._cards import write_model_card
from keel.pipeline._check import Checklist, GateResult, check_version
from keel.pipeline._lifecycle import LIFECYCLE, RunContext
from keel.pipeline._monitoring import (
    MONITOR_TAG,
    package_reference,
    recent_alerts,
    retrain,
    run_monitor,
)
from keel.pipeline._reproduce import Reproduction, reproduce
from keel.pipeline._run import STAGES, RunResult, git_commit, run_project
from keel.pipeline._stages import (
    Graph,
    Runner,
    Stage,
    StageContractError,
    StageRecord,
    StageStore,
    is_transient,
    stage_of,
)
from keel.reports import (
    atomic_write,
    render_drift_html,
    render_html,
    render_validation_html,
    write_drift_report,
    write_reports,
    write_validation_report,
)

__all__ = [
    "LIFECYCLE",
    "MONITOR_TAG",
    "STAGES",
    "Checklist",
    "GateResult",
    "Graph",
    "Reproduction",
    "RunContext",
    "RunResult",
    "Runner",
    "Stage",
    "StageContractError",
    "StageRecord",
    "StageStore",
    "atomic_write",
    "check_version",
    "git_commit",
    "is_transient",
    "package_reference",
    "recent_alerts",
    "render_drift_html",
    "render_html",
    "render_validation_html",
    "reproduce",
    "retrain",
    "run_monitor",
    "run_project",
    "stage_of",
    "write_drift_report",
    "write_model_card",
    "write_reports",
    "write_validation_report",
]
