"""Pipeline: the stage runner that wires ingest → … → register and tracks it in MLflow."""

from keel.pipeline._report import render_html, write_reports
from keel.pipeline._run import STAGES, RunResult, check_project, git_commit, run_project

__all__ = [
    "STAGES",
    "RunResult",
    "check_project",
    "git_commit",
    "render_html",
    "run_project",
    "write_reports",
]
