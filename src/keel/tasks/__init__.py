"""Tasks: one plug-in per kind of model, behind one :class:`Task` protocol.

The only place that knows which kind of model it is. Everything else asks the task:
``get_task(labels.task).metrics.exact(...)``, ``.predict(...)``, ``.folds(...)``.
"""

from keel.tasks._protocol import (
    TASKS,
    Task,
    class_balance,
    compute_metrics,
    fast_metrics,
    get_task,
    greater_is_better,
    register,
)
from keel.tasks._tabular import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    BinaryTask,
    MulticlassTask,
    RegressionTask,
)

__all__ = [
    "BINARY",
    "MULTICLASS",
    "REGRESSION",
    "TASKS",
    "BinaryTask",
    "MulticlassTask",
    "RegressionTask",
    "Task",
    "class_balance",
    "compute_metrics",
    "fast_metrics",
    "get_task",
    "greater_is_better",
    "register",
]
