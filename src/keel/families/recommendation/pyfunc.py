"""The MLflow pyfunc of a Keel recommender, logged as code (MLflow "models from code").

Nothing is pickled: MLflow stores this file and the recommender's arrays
(``recommender.npz`` + ``recommender.json``), and any MLflow client with Keel installed
loads the model with ``mlflow.pyfunc.load_model("models:/NAME@champion")``. Input: a
frame with ``user_id`` (and optionally ``k``); output: one row per recommendation with
``user_id``, ``rank``, ``item_id``, ``score`` and ``cold_start``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

DEFAULT_K = 10


class KeelRecommender(PythonModel):
    """Top-K recommendations for the users of the input frame."""

    def load_context(self, context: Any) -> None:
        """Read the recommender's arrays from the package."""
        from keel.families.recommendation.task import RecommenderModel

        self.model = RecommenderModel.load(context.artifacts["recommender"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """One row per (user, rank): the user's top-K items not yet seen."""
        frame = pd.DataFrame(model_input)
        k = int((params or {}).get("k", DEFAULT_K))
        if "k" in frame and len(frame):
            k = int(frame["k"].max())
        users = frame["user_id"].astype(str).tolist()
        lists, scores, cold = self.model.rank(self.model.user_index(users), k)
        rows = []
        for user, top, values, is_cold in zip(users, lists, scores, cold, strict=True):
            for rank, (item, score) in enumerate(zip(top, values, strict=True), start=1):
                if item >= 0:
                    rows.append(
                        {
                            "user_id": user,
                            "rank": rank,
                            "item_id": str(self.model.item_ids[item]),
                            "score": float(score),
                            "cold_start": bool(is_cold),
                        }
                    )
        return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "cold_start"])


mlflow.models.set_model(KeelRecommender())
