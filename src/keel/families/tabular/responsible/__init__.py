"""Responsible AI: fairness assessed (and judged), predictions explained, mitigation.

Model cards and datasheets are rendered by :mod:`keel.reports` from the evidence
gathered here.
"""

from keel._groups import bin_edges, sensitive_edges
from keel.families.tabular.responsible._explain import (
    Explanation,
    counterfactual_hint,
    explain,
    explain_model,
    explain_row,
    feature_columns,
    partial_dependences,
    permutation_ranking,
)
from keel.families.tabular.responsible._fairness import (
    FairnessReport,
    assess_fairness,
    assess_model_fairness,
    group_labels,
    reweighing_weights,
)
from keel.families.tabular.responsible._mitigate import (
    BINARY_ONLY,
    NEEDS_SENSITIVE_AT_PREDICTION,
    mitigation_fitter,
)
from keel.families.tabular.responsible._robustness import (
    Decider,
    assess_robustness,
    surrogate_rules,
)

__all__ = [
    "BINARY_ONLY",
    "NEEDS_SENSITIVE_AT_PREDICTION",
    "Decider",
    "Explanation",
    "FairnessReport",
    "assess_fairness",
    "assess_model_fairness",
    "assess_robustness",
    "bin_edges",
    "counterfactual_hint",
    "explain",
    "explain_model",
    "explain_row",
    "feature_columns",
    "group_labels",
    "mitigation_fitter",
    "partial_dependences",
    "permutation_ranking",
    "reweighing_weights",
    "sensitive_edges",
    "surrogate_rules",
]
