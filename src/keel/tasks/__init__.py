"""Tasks: the protocol every task plug-in follows, and the registry of plug-ins.

The plug-ins themselves live in their family (``keel.families.<family>.task``); generic
code asks ``get_task(labels.task).metrics.exact(...)``, ``.predict(...)``,
``.folds(...)`` and never a task's name.
"""

from typing import Any

from keel.tasks._protocol import (
    TASKS,
    BaseTask,
    RankingTask,
    Task,
    all_tasks,
    class_balance,
    compute_metrics,
    fast_metrics,
    get_task,
    greater_is_better,
    register,
)

__all__ = [
    "TASKS",
    "BaseTask",
    "RankingTask",
    "Task",
    "all_tasks",
    "class_balance",
    "compute_metrics",
    "fast_metrics",
    "get_task",
    "greater_is_better",
    "register",
]

# Packages registered before the families had folders hold a copy of their MLflow
# loader code that imports these names from here: they still resolve (on first use).
_MOVED = {
    "RecommenderModel": "keel.families.recommendation.task",
    "RetrievalModel": "keel.families.retrieval.task",
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'keel.tasks' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_MOVED[name]), name)
