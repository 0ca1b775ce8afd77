"""Pipeline: the stage runner that wires ingest → … → register and tracks it in MLflow.

Names are imported on first use (PEP 562): a command that needs the checklist or a
page does not import the training stack, and the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load on first use
    from keel.pipeline._cards import write_model_card
    from keel.pipeline._check import Checklist, GateResult, check_version
    from keel.pipeline._context import RunContext
    from keel.pipeline._monitoring import (
        MONITOR_TAG,
        package_reference,
        recent_alerts,
        retrain,
        run_monitor,
    )
    from keel.pipeline._reproduce import Reproduction, reproduce
    from keel.pipeline._run import RunResult, git_commit, run_project
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

_WHERE = {
    "Checklist": ("keel.pipeline._check", "Checklist"),
    "GateResult": ("keel.pipeline._check", "GateResult"),
    "Graph": ("keel.pipeline._stages", "Graph"),
    "MONITOR_TAG": ("keel.pipeline._monitoring", "MONITOR_TAG"),
    "Reproduction": ("keel.pipeline._reproduce", "Reproduction"),
    "RunContext": ("keel.pipeline._context", "RunContext"),
    "RunResult": ("keel.pipeline._run", "RunResult"),
    "Runner": ("keel.pipeline._stages", "Runner"),
    "Stage": ("keel.pipeline._stages", "Stage"),
    "StageContractError": ("keel.pipeline._stages", "StageContractError"),
    "StageRecord": ("keel.pipeline._stages", "StageRecord"),
    "StageStore": ("keel.pipeline._stages", "StageStore"),
    "atomic_write": ("keel.reports", "atomic_write"),
    "check_version": ("keel.pipeline._check", "check_version"),
    "git_commit": ("keel.pipeline._run", "git_commit"),
    "is_transient": ("keel.pipeline._stages", "is_transient"),
    "package_reference": ("keel.pipeline._monitoring", "package_reference"),
    "recent_alerts": ("keel.pipeline._monitoring", "recent_alerts"),
    "render_drift_html": ("keel.reports", "render_drift_html"),
    "render_html": ("keel.reports", "render_html"),
    "render_validation_html": ("keel.reports", "render_validation_html"),
    "reproduce": ("keel.pipeline._reproduce", "reproduce"),
    "retrain": ("keel.pipeline._monitoring", "retrain"),
    "run_monitor": ("keel.pipeline._monitoring", "run_monitor"),
    "run_project": ("keel.pipeline._run", "run_project"),
    "stage_of": ("keel.pipeline._stages", "stage_of"),
    "write_drift_report": ("keel.reports", "write_drift_report"),
    "write_model_card": ("keel.pipeline._cards", "write_model_card"),
    "write_reports": ("keel.reports", "write_reports"),
    "write_validation_report": ("keel.reports", "write_validation_report"),
}


__getattr__ = _lazy_getattr(__name__, _WHERE, globals())

__all__ = [
    "MONITOR_TAG",
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
