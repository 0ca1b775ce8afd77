"""Recommender packages: an MLflow pyfunc from code (``pyfunc.py``), loaded as arrays.

A recommender version holds ``model/`` (the loader code and the ``recommender``
artifacts folder with ``recommender.npz`` + ``recommender.json``) and Keel's JSON
documents under ``model/keel/``, like every Keel package. Serving and ``keel
recommend`` read the arrays directly (:func:`load_recommender`): no pickle, no training
code. The MLflow calls are the registry's (``keel.registry.log_pyfunc_package``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from keel.registry import LoadedModel, ModelRef, load_pyfunc_package, log_pyfunc_package

if TYPE_CHECKING:  # the task module pulls SciPy: imported when a recommender is used
    from keel.families.recommendation.task import RecommenderModel

CODE = Path(__file__).with_name("pyfunc.py")
REQUIREMENTS = ("mlflow", "pandas", "numpy", "scipy")
FAMILY = "recommendation"

LoadedRecommender = LoadedModel
"""A recommender loaded from the registry (``.model`` is a ``RecommenderModel``)."""


def log_recommender_package(
    model: RecommenderModel,
    *,
    registered_name: str,
    metadata: dict[str, Any],
    files: dict[str, Any] | None = None,
    version_tags: dict[str, str] | None = None,
) -> ModelRef:
    """Log ``model`` as a pyfunc (from code) in the active run, then register it."""
    example = pd.DataFrame({"user_id": [str(u) for u in model.user_ids[:3]]})
    lists, scores, cold = model.rank(model.user_index(example["user_id"]), 3)
    output = pd.DataFrame(
        {
            "user_id": example["user_id"].repeat(lists.shape[1]).to_numpy(),
            "rank": list(range(1, lists.shape[1] + 1)) * len(example),
            "item_id": [str(model.item_ids[max(j, 0)]) for j in lists.ravel()],
            "score": scores.ravel(),
            "cold_start": cold.repeat(lists.shape[1]),
        }
    )
    return log_pyfunc_package(
        code=CODE,
        artifact="recommender",
        save=model.save,
        registered_name=registered_name,
        metadata={**metadata, "family": FAMILY},
        example=example,
        output=output,
        requirements=REQUIREMENTS,
        files=files,
        version_tags=version_tags,
    )


def load_recommender(uri: str, tracking_uri: str) -> LoadedRecommender:
    """Load a registered recommender (``NAME[@ALIAS|/VERSION]``) from the registry only."""

    def load(folder: Path) -> Any:
        from keel.families.recommendation.task import RecommenderModel

        return RecommenderModel.load(folder)

    return load_pyfunc_package(uri, tracking_uri, FAMILY, "recommender", load)
