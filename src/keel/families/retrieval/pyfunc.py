"""The MLflow pyfunc of a Keel retrieval model, logged as code (MLflow "models from code").

Nothing is pickled: MLflow stores this file and the package folder (chunks as Parquet,
bm25s arrays, a FAISS index, ``retrieval.json`` with every file's digest). Input: a
frame with ``query`` (and optionally ``k``); output: one row per question with
``answer``, ``citations`` (document ids, in order), ``no_answer`` and ``blocked`` (the
rule that blocked it, or empty). PII rules run only where presidio is importable.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class KeelRetrieval(PythonModel):
    """Answers with citations for the questions of the input frame."""

    def load_context(self, context: Any) -> None:
        """Read the package (digests checked)."""
        from keel.families.retrieval.task import RetrievalModel

        self.model = RetrievalModel.load(context.artifacts["retrieval"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """One row per question."""
        frame = pd.DataFrame(model_input)
        k = (params or {}).get("k")
        rows = []
        for i, query in enumerate(frame["query"].astype(str)):
            ask_k = int(frame["k"].iloc[i]) if "k" in frame else k
            answer = self.model.ask(query, ask_k)
            rows.append(
                {
                    "query": query,
                    "answer": answer["answer"],
                    "citations": ",".join(c["doc_id"] for c in answer["citations"] if c["cited"]),
                    "no_answer": bool(answer["no_answer"]),
                    "blocked": (answer["blocked"] or {}).get("rule", ""),
                }
            )
        return pd.DataFrame(rows, columns=["query", "answer", "citations", "no_answer", "blocked"])


mlflow.models.set_model(KeelRetrieval())
