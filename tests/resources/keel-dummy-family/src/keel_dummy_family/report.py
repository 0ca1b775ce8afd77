"""The constant model's card and governance documents, from its run's report."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def card_sections(doc: dict[str, Any]) -> list[Any]:
    """The card: what the model does and how well (blocks of ``(kind, content)``)."""
    value, mae = doc.get("value"), doc["metrics"]["mae"]
    return [
        ("Model", [("p", f"Every row scores {value}: the mean of the training target.")]),
        ("Evaluation", [("p", f"Mean absolute error on held-out rows: {mae:.4f}.")]),
    ]


def write_governance(
    doc: dict[str, Any], config: dict[str, Any], folder: Path, registry: dict[str, Any]
) -> dict[str, str]:
    from keel.reports._governance import write_governance as write

    facts = {"name": doc["name"], "version": doc.get("version", "-"), "task": "constant"}
    facts |= {"endpoints": (("POST", "/score", "predict", "the constant for every row"),)}
    facts |= {"offline": "Offline: the constant is in the card.", **registry}
    return write(folder, facts, config, {})
