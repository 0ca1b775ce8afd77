"""Sensitive groups of rows: shared by fairness assessment, mitigation and serving.

Outside the layers, like ``keel.estimators``: a model mitigated per group must find
the group of a row at prediction time with exactly the rule used while fitting, and
serving may not import the responsible-AI layer that fitted it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from keel.config import FairnessConfig

INTERSECTION = " & "
MISSING = "(missing)"
QUANTILE_BINS = 4  # numeric sensitive features without configured edges: quartiles


def group_labels(
    frame: pd.DataFrame, features: Sequence[str], edges: dict[str, list[float]]
) -> pd.DataFrame:
    """One string column per sensitive feature: its value, or its bin when numeric.

    Bins read ``[a, b)``; missing values are their own group, ``(missing)``.
    """
    out = {}
    for name in features:
        column = frame[name]
        if name in edges:
            cuts = [-math.inf, *edges[name], math.inf]
            labels = [bin_label(lo, hi) for lo, hi in itertools.pairwise(cuts)]
            numbers = pd.to_numeric(column, errors="coerce")
            binned = pd.cut(numbers, cuts, right=False, labels=labels)
            out[name] = binned.astype(object).where(binned.notna(), MISSING).astype(str)
        else:
            out[name] = column.astype(object).where(column.notna(), MISSING).astype(str)
    return pd.DataFrame(out, index=frame.index)


def group_keys(
    frame: pd.DataFrame, features: Sequence[str], edges: dict[str, list[float]]
) -> pd.Series:
    """The intersectional group of each row, e.g. ``"Female & Black"``."""
    return group_labels(frame, features, edges).agg(INTERSECTION.join, axis=1)


def bin_label(lo: float, hi: float) -> str:
    """How a bin ``[lo, hi)`` of a numeric sensitive feature is named."""
    if math.isinf(lo):
        return f"< {hi:g}"
    if math.isinf(hi):
        return f">= {lo:g}"
    return f"[{lo:g}, {hi:g})"


def bin_edges(values: pd.Series, configured: Sequence[float] | None) -> list[float]:
    """Inner bin edges for a numeric sensitive feature: configured, else quartiles."""
    if configured:
        return [float(e) for e in configured]
    finite = pd.to_numeric(values, errors="coerce").dropna()
    if finite.empty:
        return []
    inner = np.unique(np.quantile(finite, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]))
    return [float(e) for e in inner]


def sensitive_edges(
    reference: pd.DataFrame, sensitive: Sequence[str], config: FairnessConfig
) -> dict[str, list[float]]:
    """Bin edges of the numeric sensitive features: configured, else training quartiles.

    A numeric column with at most 10 distinct values is used as it is (each value a group).
    """
    return {
        name: bin_edges(reference[name], config.bins.get(name))
        for name in sensitive
        if name in config.bins
        or (
            pd.api.types.is_numeric_dtype(reference[name])
            and not pd.api.types.is_bool_dtype(reference[name])
            and reference[name].nunique() > 10
        )
    }
