"""Fairness assessment: fairlearn's numbers per sensitive group, judged against limits.

Point values come from fairlearn itself (``MetricFrame`` and its ``*_difference`` /
``*_ratio`` functions) so that anyone can check them with fairlearn. The 95 % intervals
come from Keel's own bootstrap (the same resampled rows for every group, vectorised with
``bincount``): fairlearn's ``MetricFrame(n_boot=...)`` gives the same kind of interval
but takes minutes on a test set of 10,000 rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
)

from keel._groups import INTERSECTION, group_keys, group_labels, sensitive_edges
from keel.config import FairnessConfig
from keel.families.tabular.training import predict_with
from keel.tasks import get_task


@dataclass
class FairnessReport:
    """Per-group metrics and fairness measures for each sensitive feature."""

    task: str
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    limits: dict[str, tuple[str, float]] = field(default_factory=dict)
    breaches: list[dict[str, Any]] = field(default_factory=list)
    min_group_size: int = 30

    @property
    def judged(self) -> bool:
        """Whether any limit was configured (otherwise the numbers are reported only)."""
        return bool(self.limits)

    @property
    def passed(self) -> bool:
        """No configured limit is breached (vacuously true when none is configured)."""
        return not self.breaches

    def describe(self) -> str:
        """One line for people."""
        if not self.features:
            return "fairness: no sensitive features configured"
        if not self.judged:
            return "fairness: reported, not judged (no limits configured under fairness:)"
        if self.passed:
            return f"fairness gate passed ({len(self.limits)} limits)"
        first = self.breaches[0]
        return (
            f"fairness gate FAILED: {first['feature']} {first['measure']} = {first['value']:.4f}"
            f" ({first['kind']} {first['limit']:g})"
            + (f" and {len(self.breaches) - 1} more" if len(self.breaches) > 1 else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "task": self.task,
            # the per-group number a card shows first (selection rate, accuracy, RMSE)
            "headline": get_task(self.task).fairness_headline,
            "min_group_size": self.min_group_size,
            "features": self.features,
            "limits": {k: {"kind": v[0], "value": v[1]} for k, v in self.limits.items()},
            "breaches": self.breaches,
            "judged": self.judged,
            "passed": self.passed,
        }


def assess_fairness(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: pd.DataFrame,
    task: str,
    positive_class: str | None,
    config: FairnessConfig,
    seed: int = 0,
    binned: dict[str, list[float]] | None = None,
) -> FairnessReport:
    """Per-group metrics with intervals, fairness measures, and limit breaches.

    ``groups`` holds one string column per sensitive feature (see :func:`group_labels`);
    with ``config.intersections`` and two or more features their intersection is
    assessed too. Measures are computed on the groups with at least
    ``config.min_group_size`` rows ("judged"); the same measures over every group are
    reported beside them (``all_groups``), and the small groups are listed.
    """
    report = FairnessReport(task, limits=config.limits, min_group_size=config.min_group_size)
    if groups.shape[1] == 0:
        return report
    truth, decided = get_task(task).fairness_arrays(y_true, y_pred, positive_class)
    columns = {name: groups[name].to_numpy() for name in groups.columns}
    if config.intersections and len(columns) > 1:
        joined = groups.astype(str).agg(INTERSECTION.join, axis=1).to_numpy()
        columns[INTERSECTION.join(groups.columns)] = joined
    for name, labels in columns.items():
        report.features[name] = _assess_one(
            truth, decided, labels, task, config, seed, (binned or {}).get(name)
        )
        for measure, (kind, limit) in report.limits.items():
            value = report.features[name]["measures"].get(measure)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if (kind == "max" and value > limit) or (kind == "min" and value < limit):
                report.breaches.append(
                    {
                        "feature": name,
                        "measure": measure,
                        "value": value,
                        "kind": kind,
                        "limit": limit,
                        "groups": _extremes(report.features[name], measure),
                    }
                )
    return report


def _metric_functions(task: str) -> dict[str, Any]:
    return get_task(task).group_metrics()


def _measures(table: pd.DataFrame, task: str) -> dict[str, float]:
    """The fairness measures of fairlearn, from its per-group table over the given groups.

    fairlearn defines them on ``MetricFrame.by_group``: demographic parity is the spread
    (difference, min/max ratio) of selection rates, equal opportunity the spread of true
    positive rates, equalized odds the larger of the TPR and FPR spreads. Reading them
    off one table avoids building a MetricFrame per measure (each costs a group-by).
    """
    if len(table) < 2:
        return {}

    def spread(metric: str) -> float:
        column = table[metric].astype(float)
        return float(column.max() - column.min())

    out = get_task(task).group_measures(spread, table)
    for metric in ("accuracy", "rmse", "mae"):
        if metric in table:
            out[f"{metric}_difference"] = spread(metric)
    return out


def _assess_one(truth, decided, labels, task, config, seed, edges) -> dict[str, Any]:
    functions = _metric_functions(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = MetricFrame(
            metrics=functions, y_true=truth, y_pred=decided, sensitive_features=labels
        )
    by_group = frame.by_group
    names = [str(g) for g in by_group.index]
    sizes = {str(g): int(by_group.loc[g, "count"]) for g in by_group.index}
    judged_groups = [g for g in names if sizes[g] >= config.min_group_size]
    intervals = _bootstrap_groups(truth, decided, labels, names, task, config.resamples, seed)
    groups = []
    for g in by_group.index:
        key = str(g)
        row: dict[str, Any] = {"group": key, "rows": sizes[key], "judged": key in judged_groups}
        for metric in functions:
            if metric == "count":
                continue
            value = float(by_group.loc[g, metric])
            low, high = intervals.get((key, metric), (float("nan"), float("nan")))
            row[metric] = {"value": value, "low": low, "high": high}
        groups.append(row)
    table = by_group.set_axis(names)
    return {
        "groups": groups,
        "measures": _measures(table.loc[judged_groups], task),
        "all_groups": _measures(table, task),
        "small_groups": [g for g in names if g not in judged_groups],
        "bins": edges,
    }


def _bootstrap_groups(truth, decided, labels, names, task, resamples, seed):
    """95 % percentile intervals of each group metric over whole-sample resamples."""
    if resamples <= 0:
        return {}
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([index[str(v)] for v in labels])
    k, n = len(names), len(codes)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(resamples):
            rows = rng.integers(0, n, n)
            g, t, d = codes[rows], truth[rows], decided[rows]
            size = np.bincount(g, minlength=k).astype(float)
            values = get_task(task).group_resample(g, t, d, k, size)
            for metric, value in values.items():
                draws.setdefault(metric, []).append(value)
    out = {}
    for metric, samples in draws.items():
        stacked = np.vstack(samples)
        for name, i in index.items():
            column = stacked[:, i][np.isfinite(stacked[:, i])]
            if len(column):
                low, high = np.percentile(column, [2.5, 97.5])
                out[(name, metric)] = (float(low), float(high))
    return out


def _extremes(feature: dict[str, Any], measure: str) -> dict[str, Any]:
    """The judged groups at either end of the metric behind ``measure``."""
    metric = {
        "demographic_parity_difference": "selection_rate",
        "demographic_parity_ratio": "selection_rate",
        "disparate_impact_ratio": "selection_rate",
        "equal_opportunity_difference": "true_positive_rate",
        "equalized_odds_difference": "true_positive_rate",
        "accuracy_difference": "accuracy",
        "rmse_difference": "rmse",
        "mae_difference": "mae",
    }.get(measure)
    judged = [g for g in feature["groups"] if g["judged"] and metric in g]
    if not judged:
        return {}
    low = min(judged, key=lambda g: g[metric]["value"])
    high = max(judged, key=lambda g: g[metric]["value"])
    return {
        "metric": metric,
        "lowest": {"group": low["group"], "value": low[metric]["value"], "rows": low["rows"]},
        "highest": {"group": high["group"], "value": high[metric]["value"], "rows": high["rows"]},
    }


def assess_model_fairness(
    model: Any,
    rows: pd.DataFrame,
    reference: pd.DataFrame,
    schema: Any,
    labels: Any,
    sensitive: Sequence[str],
    config: FairnessConfig,
    threshold: float | None = None,
    seed: int = 0,
) -> FairnessReport:
    """Fairness of ``model``'s decisions on ``rows`` (the test rows) per sensitive feature.

    Decisions are the ones serving gives (binary: at ``threshold``). Numeric sensitive
    features are binned at the configured edges, else at the quartiles of
    ``reference`` (the training rows), so that the groups do not depend on the test set.
    """
    predictions, _, _ = predict_with(
        model, rows[schema.feature_names], labels.task, threshold, labels.positive_class
    )
    edges = sensitive_edges(reference, sensitive, config)
    groups = group_labels(rows, sensitive, edges)
    return assess_fairness(
        rows[schema.target].to_numpy(),
        predictions,
        groups,
        labels.task,
        labels.positive_class,
        config,
        seed,
        edges,
    )


def reweighing_weights(
    rows: pd.DataFrame, target: str, sensitive: Sequence[str], edges: dict[str, list[float]]
) -> np.ndarray:
    """Kamiran & Calders reweighing: weight P(g) P(y) / P(g, y) per row.

    ``g`` is the intersection of the sensitive groups, ``y`` the label. Every
    (group, label) cell then carries the weight it would have if the label were
    independent of the group (they sum to the number of rows unless some group has
    no row of some label: that cell's share cannot be given to anyone).
    """
    groups = group_keys(rows, sensitive, edges)
    labels = rows[target].astype(str)
    n = len(rows)
    p_group = groups.map(groups.value_counts() / n)
    p_label = labels.map(labels.value_counts() / n)
    joint = pd.Series(list(zip(groups, labels, strict=True)), index=rows.index)
    p_joint = joint.map(joint.value_counts() / n)
    return (p_group * p_label / p_joint).to_numpy(dtype=float)
