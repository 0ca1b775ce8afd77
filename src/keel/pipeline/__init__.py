"""Pipeline: the stage runner that wires ingest → … → register and tracks it in MLflow."""

from keel.pipeline._report import (
    render_html,
    render_validation_html,
    write_reports,
    write_validation_report,
)
from keel.pipeline._run import STAGES, RunResult, git_commit, run_project

__all__ = [
    "STAGES",
    "RunResult",
    "git_commit",
    "render_html",
    "render_validation_html",
    "run_project",
    "write_reports",
    "write_validation_report",
]
