"""Retrieval packages in MLflow: logged as a pyfunc from code, loaded as files.

A retrieval version holds ``model/`` (an MLflow pyfunc: ``retrieval_pyfunc.py`` and the
``retrieval`` artifacts folder: chunks, BM25 arrays, FAISS index, settings, digests) and
Keel's JSON documents under ``model/keel/``, like every Keel package. Serving reads the
folder directly (:func:`load_retrieval`): no pickle, no training code. The prompt
template is versioned in MLflow's prompt registry when the store supports it.
"""

from __future__ import annotations

import hashlib
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
from keel.registry._mlflow import METADATA_KEY, PACKAGE_DIR, ModelRef, downloaded_package

if TYPE_CHECKING:
    from keel.tasks import RetrievalModel

CODE = Path(__file__).with_name("retrieval_pyfunc.py")
_REQUIREMENTS = ("mlflow", "pandas", "numpy", "bm25s", "PyStemmer", "wordllama", "faiss-cpu")


@dataclass
class LoadedRetrieval:
    """A retrieval model loaded from the registry with its metadata and documents."""

    name: str
    version: str
    alias: str | None
    model: RetrievalModel = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    documents: dict[str, Any] = field(default_factory=dict, repr=False)
    semver: str | None = None

    @property
    def task(self) -> str:
        """Always ``retrieval``."""
        return "retrieval"


def log_retrieval_package(
    model: RetrievalModel,
    *,
    registered_name: str,
    metadata: dict[str, Any],
    files: dict[str, Any] | None = None,
    version_tags: dict[str, str] | None = None,
) -> ModelRef:
    """Log ``model`` as a pyfunc (from code) in the active run, then register it."""
    example = pd.DataFrame({"query": ["How do I roll back a model?"]})
    output = pd.DataFrame(
        {"query": ["q"], "answer": ["a [1]"], "citations": ["d"], "no_answer": [False]}
        | {"blocked": [""]}
    )
    requirements = [f"{p}=={installed_version(p)}" for p in _REQUIREMENTS]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        package = Path(folder) / "retrieval"
        digests = model.save(package)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CODE),
            artifacts={"retrieval": str(package)},
            signature=infer_signature(example, output),
            pip_requirements=requirements,
            metadata={METADATA_KEY: {**metadata, "package_files": digests}},
        )
        documents = Path(folder) / "documents"
        documents.mkdir()
        for name, document in (files or {}).items():
            (documents / name).write_text(json.dumps(document, sort_keys=True, default=str))
        MlflowClient().log_model_artifacts(info.model_id, str(documents), PACKAGE_DIR)
        index = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
        mlflow.set_tag("keel.index.digest", index)  # chunks, BM25 arrays, FAISS index
        tags = {**(version_tags or {}), "keel.index.digest": index}
        version = mlflow.register_model(info.model_uri, registered_name, tags=tags)
    return ModelRef(registered_name, str(version.version))


def register_prompt(name: str, template: str, tags: dict[str, str]) -> dict[str, Any]:
    """Version the prompt template in MLflow's prompt registry (``{"name", "version"}``).

    Returns ``{"error": ...}`` when the tracking store has no prompt registry: the
    template is still stored in the package and logged as an artifact.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prompt = mlflow.genai.register_prompt(
                name=f"{name}-answer",
                template=template.replace("{passages}", "{{passages}}").replace(
                    "{question}", "{{question}}"
                ),
                commit_message="keel run",
                tags=tags,
            )
        return {"name": prompt.name, "version": str(prompt.version)}
    except Exception as exc:  # reported on the card: the package still holds it
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def load_retrieval(uri: str, tracking_uri: str) -> LoadedRetrieval:
    """Load a registered retrieval model (``NAME[@ALIAS|/VERSION]``) from the registry only."""
    with downloaded_package(uri, tracking_uri) as found:
        if found.meta.get("task") != "retrieval":
            raise ModelNotFoundError(f"{found.model_uri} is not a Keel retrieval model")
        folder = found.local / "artifacts" / "retrieval"
        if not folder.is_dir():
            raise ModelNotFoundError(f"{found.model_uri} has no retrieval package")
        from keel.tasks import RetrievalModel

        try:
            model = RetrievalModel.load(folder)
        except ValueError as exc:  # a file differs from its recorded digest
            raise ModelNotFoundError(f"{found.model_uri}: {exc}") from None
    return LoadedRetrieval(
        found.name,
        str(found.version.version),
        found.alias,
        model,
        found.meta,
        found.documents,
        semver=(found.version.tags or {}).get("keel.semver"),
    )


def package_task(uri: str, tracking_uri: str) -> str:
    """The task of ``NAME[@ALIAS|/VERSION]`` (reads ``MLmodel`` only): which loader to use."""
    from keel.registry._mlflow import package_documents

    meta, _ = package_documents(uri, tracking_uri, ())
    return str(meta.get("task"))


def is_retrieval(uri: str, tracking_uri: str) -> bool:
    """Whether ``NAME[@ALIAS|/VERSION]`` is a retrieval model (reads ``MLmodel`` only)."""
    return package_task(uri, tracking_uri) == "retrieval"
