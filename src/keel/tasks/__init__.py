"""Tasks: one plug-in per kind of model, behind one :class:`Task` protocol.

The only place that knows which kind of model it is. Everything else asks the task:
``get_task(labels.task).metrics.exact(...)``, ``.predict(...)``, ``.folds(...)``.
"""

from keel.tasks._protocol import (
    TASKS,
    BaseTask,
    Task,
    class_balance,
    compute_metrics,
    fast_metrics,
    get_task,
    greater_is_better,
    register,
)
from keel.tasks._recommendation import (
    RECOMMENDATION,
    RankingResult,
    RecommendationTask,
    RecommenderModel,
    evaluate_ranking,
)
from keel.tasks._recommenders import (
    DEFAULT_RECOMMENDER_PARAMS,
    RECOMMENDER_SPACES,
    FitData,
    Recommender,
    make_recommender,
)
from keel.tasks._retrieval import (
    RETRIEVAL,
    AnswerSettings,
    RetrievalModel,
    RetrievalResult,
    RetrievalTask,
    answer_metrics,
    evaluate_retrieval,
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
    "DEFAULT_RECOMMENDER_PARAMS",
    "MULTICLASS",
    "RECOMMENDATION",
    "RECOMMENDER_SPACES",
    "REGRESSION",
    "RETRIEVAL",
    "TASKS",
    "AnswerSettings",
    "BaseTask",
    "BinaryTask",
    "FitData",
    "MulticlassTask",
    "RankingResult",
    "RecommendationTask",
    "Recommender",
    "RecommenderModel",
    "RegressionTask",
    "RetrievalModel",
    "RetrievalResult",
    "RetrievalTask",
    "Task",
    "answer_metrics",
    "class_balance",
    "compute_metrics",
    "evaluate_ranking",
    "evaluate_retrieval",
    "fast_metrics",
    "get_task",
    "greater_is_better",
    "make_recommender",
    "register",
]
