"""Retrieval packages: an MLflow pyfunc from code (``pyfunc.py``), loaded as files.

A retrieval version holds ``model/`` (the loader code and the ``retrieval`` artifacts
folder: chunks, BM25 arrays, FAISS index, settings, digests) and Keel's JSON documents
under ``model/keel/``, like every Keel package. Serving reads the folder directly
(:func:`load_retrieval`): no pickle, no training code. The MLflow calls are the
registry's (``keel.registry.log_pyfunc_package``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from keel.registry import LoadedModel, ModelRef, load_pyfunc_package, log_pyfunc_package

if TYPE_CHECKING:
    from keel.families.retrieval.task import RetrievalModel

CODE = Path(__file__).with_name("pyfunc.py")
REQUIREMENTS = ("mlflow", "pandas", "numpy", "bm25s", "PyStemmer", "wordllama", "faiss-cpu")
FAMILY = "retrieval"

LoadedRetrieval = LoadedModel
"""A retrieval model loaded from the registry (``.model`` is a ``RetrievalModel``)."""


def index_digest(digests: dict[str, str]) -> str:
    """One digest of the chunks, BM25 arrays and FAISS index (``keel.index.digest``)."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


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
    return log_pyfunc_package(
        code=CODE,
        artifact="retrieval",
        save=model.save,
        registered_name=registered_name,
        metadata={**metadata, "family": FAMILY},
        example=example,
        output=output,
        requirements=REQUIREMENTS,
        files=files,
        version_tags=version_tags,
        with_example=False,
        digest_tag=("keel.index.digest", index_digest),
    )


def load_retrieval(uri: str, tracking_uri: str) -> LoadedRetrieval:
    """Load a registered retrieval model (``NAME[@ALIAS|/VERSION]``) from the registry only."""

    def load(folder: Path) -> Any:
        from keel.families.retrieval.task import RetrievalModel

        return RetrievalModel.load(folder)

    return load_pyfunc_package(uri, tracking_uri, FAMILY, "retrieval", load)
