"""Recommender packages in MLflow: logged as a pyfunc from code, loaded as arrays.

A recommender version holds ``model/`` (an MLflow pyfunc: ``recommender_pyfunc.py``
and the ``recommender`` artifacts folder with ``recommender.npz`` +
``recommender.json``) and Keel's JSON documents under ``model/keel/``, like a tabular
package. Serving and ``keel recommend`` read the arrays directly
(:func:`load_recommender`): no pickle, no training code.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from keel.errors import ModelNotFoundError
from keel.registry._mlflow import (
    METADATA_KEY,
    PACKAGE_DIR,
    ModelRef,
    downloaded_package,
)

if TYPE_CHECKING:  # keel.tasks pulls scikit-learn: imported when a recommender is used
    from keel.tasks import RecommenderModel

CODE = Path(__file__).with_name("recommender_pyfunc.py")
_REQUIREMENTS = ("mlflow", "pandas", "numpy", "scipy")


@dataclass
class LoadedRecommender:
    """A recommender loaded from the registry with its metadata and documents."""

    name: str
    version: str
    alias: str | None
    model: RecommenderModel = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    documents: dict[str, Any] = field(default_factory=dict, repr=False)
    semver: str | None = None

    @property
    def task(self) -> str:
        """Always ``recommendation``."""
        return str(self.metadata.get("task", "recommendation"))


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
    requirements = [f"{p}=={installed_version(p)}" for p in _REQUIREMENTS]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrays = Path(folder) / "recommender"
        model.save(arrays)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CODE),
            artifacts={"recommender": str(arrays)},
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=requirements,
            metadata={METADATA_KEY: metadata},
        )
        documents = Path(folder) / "documents"
        documents.mkdir()
        for name, document in (files or {}).items():
            (documents / name).write_text(json.dumps(document, sort_keys=True, default=str))
        MlflowClient().log_model_artifacts(info.model_id, str(documents), PACKAGE_DIR)
        version = mlflow.register_model(info.model_uri, registered_name, tags=version_tags)
    return ModelRef(registered_name, str(version.version))


def load_recommender(uri: str, tracking_uri: str) -> LoadedRecommender:
    """Load a registered recommender (``NAME[@ALIAS|/VERSION]``) from the registry only."""
    with downloaded_package(uri, tracking_uri) as found:
        if found.meta.get("task") != "recommendation":
            raise ModelNotFoundError(f"{found.model_uri} is not a Keel recommender")
        arrays = found.local / "artifacts" / "recommender"
        if not arrays.is_dir():
            raise ModelNotFoundError(f"{found.model_uri} has no recommender arrays")
        from keel.tasks import RecommenderModel

        model = RecommenderModel.load(arrays)
    return LoadedRecommender(
        found.name,
        str(found.version.version),
        found.alias,
        model,
        found.meta,
        found.documents,
        semver=(found.version.tags or {}).get("keel.semver"),
    )


def is_recommender(uri: str, tracking_uri: str) -> bool:
    """Whether ``NAME[@ALIAS|/VERSION]`` is a recommender (reads ``MLmodel`` only)."""
    from keel.registry._mlflow import package_documents
    from keel.tasks import get_task

    meta, _ = package_documents(uri, tracking_uri, ())
    return get_task(str(meta.get("task"))).family == "ranking"
