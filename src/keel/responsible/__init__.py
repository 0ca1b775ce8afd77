"""Responsible AI: fairness assessed (and judged), predictions explained, model cards."""

from keel.responsible._fairness import (
    FairnessReport,
    assess_fairness,
    assess_model_fairness,
    bin_edges,
    group_labels,
)

__all__ = [
    "FairnessReport",
    "assess_fairness",
    "assess_model_fairness",
    "bin_edges",
    "group_labels",
]
