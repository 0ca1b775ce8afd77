"""The retrieval family's keel.yaml rules, checked when keel.yaml is read.

``keel.config.ProjectConfig`` holds every key; this module says which of them the
family needs and how they must relate (a ``ValueError`` names the key and the fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.config import RECOMMENDATION_KEYS, RETRIEVER_NAMES


def defaults(data: dict[str, Any]) -> dict[str, Any]:
    """Retrievers are the candidates unless keel.yaml names some."""
    data.setdefault("candidates", list(RETRIEVER_NAMES))
    return data


def check_config(config: Any) -> None:
    """Raise a ValueError naming the key and the fix when keel.yaml breaks a rule."""
    if not isinstance(config.data, str):
        raise ValueError(
            "data: a retrieval corpus is a folder of documents or a table file, not SQL or DVC"
        )
    if config.queries is None:
        raise ValueError(
            "task: retrieval needs queries: a JSONL or CSV file of labelled questions"
            " (query, relevant document ids, optional answer) to tune and evaluate on"
        )
    if Path(config.queries).suffix.lower() not in (".jsonl", ".ndjson", ".csv"):
        raise ValueError(f"queries: must be a .jsonl or .csv file, got {config.queries!r}")
    misplaced = [
        k for k in (*RECOMMENDATION_KEYS, "time_column", "group_column") if getattr(config, k)
    ]
    if config.target is not None:
        misplaced.append("target")
    if config.sensitive_features:
        misplaced.append("sensitive_features")
    if misplaced:
        raise ValueError(
            f"{', '.join(misplaced)} do(es) not apply to task: retrieval; remove"
            f" {'it' if len(misplaced) == 1 else 'them'}"
        )
    wrong = [c for c in config.candidates if c not in RETRIEVER_NAMES]
    if wrong:
        raise ValueError(
            f"candidates {wrong} are not retrievers; task: retrieval takes"
            f" {', '.join(RETRIEVER_NAMES)}"
        )
    return
