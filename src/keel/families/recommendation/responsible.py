"""Responsible recommendation: quality per user group, item exposure, explanations.

*User side*: per-user NDCG and recall of the test users, grouped by each sensitive
feature (numbers binned by ``fairness.bins``) and by history (cold-start vs warm),
with fairlearn's ``MetricFrame`` for the per-group means, differences and ratios and a
bootstrap interval (users resampled) per group. ``fairness.max_ndcg_difference`` and
``min_ndcg_ratio`` are judged on groups of at least ``min_group_size`` users.

*Item side*: each item group's share of the recommendation slots against its share
of the training interactions (exposure ratio; 1 is proportional), for popularity
(head: the most popular fifth of the items; tail: the rest) and for the configured
item attribute.

*Explanations*: for a recommended item, the history items that raised its score most
(item–item weights for item_knn and EASE; the fold-in decomposition for ALS/BPR).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from keel.evaluation._ranking import mean_intervals
from keel.families.recommendation.data import HEAD_SHARE, ITEM
from keel.families.recommendation.task import RankingResult, RecommenderModel

HISTORY = "history"
UNKNOWN = "(not in users table)"


def group_labels(
    users: pd.DataFrame | None, sensitive: Sequence[str], fairness: Any
) -> dict[str, pd.Series]:
    """Each sensitive feature's group label per user id, binned as tabular fairness bins.

    The same rule as for tabular models (``keel._groups``): configured ``fairness.bins``,
    else the quartiles of a numeric column with more than 10 values.
    """
    from keel._groups import group_labels as labels_of
    from keel._groups import sensitive_edges

    if users is None or not sensitive:
        return {}
    table = users[list(sensitive)]
    labelled = labels_of(table, sensitive, sensitive_edges(table, sensitive, fairness))
    return {column: labelled[column] for column in sensitive}


def user_groups(
    result: RankingResult,
    users: pd.DataFrame | None,
    sensitive: Sequence[str],
    fairness: Any,
) -> pd.DataFrame:
    """One row per evaluated user: a group label per sensitive feature and history."""
    out = pd.DataFrame(index=pd.Index(result.user_ids, name="user"))
    for column, labels in group_labels(users, sensitive, fairness).items():
        out[column] = labels.reindex(out.index).fillna(UNKNOWN).astype(str)
    out[HISTORY] = np.where(result.cold, "cold start", "warm")
    return out


def ranking_fairness(
    result: RankingResult,
    groups: pd.DataFrame,
    metrics: Sequence[str],
    config: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """Per group: users, each metric with its interval; per feature: difference, ratio."""
    from fairlearn.metrics import MetricFrame

    min_size = config.min_group_size
    features: dict[str, Any] = {}
    checks = []
    limits = config.limits
    for column in groups.columns:
        labels = groups[column].to_numpy()
        values = {m: result.per_user[m] for m in metrics}
        # per-user values go in as y_true, one column per metric
        frame = MetricFrame(
            metrics={m: _column(i) for i, m in enumerate(metrics)},
            y_true=np.column_stack([values[m] for m in metrics]),
            y_pred=np.zeros(len(labels)),
            sensitive_features=pd.Series(labels, name=column),
        )
        sizes = pd.Series(labels).value_counts()
        judged = [g for g in sizes.index if sizes[g] >= min_size]
        rows = []
        for group in sizes.index:
            pick = labels == group
            intervals = mean_intervals(
                {m: values[m][pick] for m in metrics}, resamples=config.resamples, seed=seed
            )
            rows.append(
                {
                    "group": str(group),
                    "users": int(sizes[group]),
                    "judged": bool(group in judged),
                    **{m: intervals[m].to_dict() for m in metrics},
                }
            )
        by_group = frame.by_group.loc[judged] if judged else frame.by_group.iloc[:0]
        measures = {}
        for m in metrics:
            series = by_group[m].astype(float)
            if len(series) >= 2:
                high, low = float(series.max()), float(series.min())
                measures[f"{_short(m)}_difference"] = high - low
                measures[f"{_short(m)}_ratio"] = low / high if high > 0 else float("nan")
        for measure, (kind, limit) in limits.items():
            if measure in measures and math.isfinite(measures[measure]):
                value = measures[measure]
                ok = value <= limit if kind == "max" else value >= limit
                checks.append(
                    {
                        "feature": column,
                        "measure": measure,
                        "value": value,
                        "limit": limit,
                        "kind": kind,
                        "passed": bool(ok),
                    }
                )
        features[column] = {
            "groups": sorted(rows, key=lambda r: -r["users"]),
            "measures": measures,
            "all_users": {m: float(np.mean(values[m])) for m in metrics},
        }
    judged_any = any(c for c in checks)
    return {
        "metrics": list(metrics),
        "features": features,
        "checks": checks,
        "judged": bool(judged_any),
        "passed": all(c["passed"] for c in checks),
        "min_group_size": min_size,
    }


def _column(i: int) -> Any:
    def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(np.asarray(y_true)[:, i])) if len(y_true) else float("nan")

    return metric


def _short(metric: str) -> str:
    """``ndcg_at_10`` → ``ndcg`` (the limits name the metric, not the cut-off)."""
    return metric.split("_at_")[0]


def item_groups(
    model: RecommenderModel,
    items: pd.DataFrame | None,
    attribute: str | None,
    separator: str,
) -> dict[str, list[list[str]]]:
    """Group labels of each catalogue item: popularity (head/tail) and the attribute."""
    popularity = model.recommender.popularity
    head = max(1, math.ceil(HEAD_SHARE * len(popularity)))
    order = np.argsort(-popularity, kind="stable")
    labels = np.array(["tail"] * len(popularity), dtype=object)
    labels[order[:head]] = "head"
    out = {"popularity": [[str(x)] for x in labels]}
    if attribute and items is not None and attribute in items:
        values = items[attribute].reindex(pd.Index(model.item_ids))
        out[attribute] = [
            [v for v in str(x).split(separator) if v] if isinstance(x, str) and x else ["(none)"]
            for x in values
        ]
    return out


def attribute_matrix(labels: list[list[str]]) -> np.ndarray:
    """Items × attribute values 0/1 matrix (for list diversity)."""
    values = sorted({v for row in labels for v in row})
    where = {v: j for j, v in enumerate(values)}
    matrix = np.zeros((len(labels), len(values)), dtype=np.float64)
    for i, row in enumerate(labels):
        for v in row:
            matrix[i, where[v]] = 1.0
    return matrix


def exposure(
    lists: np.ndarray, model: RecommenderModel, groups: dict[str, list[list[str]]]
) -> dict[str, Any]:
    """Each item group's share of recommendation slots vs of training interactions."""
    shown = lists[lists >= 0]
    popularity = model.recommender.popularity
    out: dict[str, Any] = {}
    for name, labels in groups.items():
        slots: dict[str, float] = {}
        interactions: dict[str, float] = {}
        for item, count in zip(*np.unique(shown, return_counts=True), strict=True):
            for label in labels[item]:
                slots[label] = slots.get(label, 0.0) + count / len(labels[item])
        for item, count in enumerate(popularity):
            for label in labels[item]:
                interactions[label] = interactions.get(label, 0.0) + count / len(labels[item])
        total_slots, total_inter = (
            max(1.0, sum(slots.values())),
            max(1.0, sum(interactions.values())),
        )
        rows = []
        for label in sorted(interactions, key=lambda x: -interactions[x]):
            a, b = slots.get(label, 0.0) / total_slots, interactions[label] / total_inter
            rows.append(
                {
                    "group": label,
                    "recommended_share": a,
                    "interaction_share": b,
                    "exposure_ratio": a / b if b > 0 else float("nan"),
                }
            )
        out[name] = rows
    return out


def explain_lists(
    model: RecommenderModel,
    user_ids: Sequence[str],
    k: int = 5,
    because: int = 3,
    items: pd.DataFrame | None = None,
    title: str | None = None,
) -> list[dict[str, Any]]:
    """For each user: recent history, and each recommendation with what it came from."""
    out = []
    rows = model.user_index(user_ids)
    lists, scores, cold = model.rank(rows, k)

    def name(item: str) -> str:
        if items is not None and title and title in items and item in items.index:
            return f"{item} ({items.at[item, title]})"
        return item

    for user, row, top, score, is_cold in zip(user_ids, rows, lists, scores, cold, strict=True):
        history = model.history[row].indices if row >= 0 else np.array([], dtype=np.int64)
        recs = []
        for j, s in zip(top, score, strict=True):
            if j < 0:
                continue
            reasons = model.explain(int(row), int(j), because)
            recs.append(
                {
                    "item_id": str(model.item_ids[j]),
                    "item": name(str(model.item_ids[j])),
                    "score": float(s),
                    "because": [{"item": name(i), "weight": w} for i, w in reasons],
                }
            )
        out.append(
            {
                "user_id": str(user),
                "cold_start": bool(is_cold),
                "history_size": len(history),
                "history": [name(str(model.item_ids[j])) for j in history[:8]],
                "recommendations": recs,
            }
        )
    return out


def recommended_mix(lists: np.ndarray, model: RecommenderModel, held_out: pd.DataFrame) -> dict:
    """Global view: how popular the recommended items are vs what users went on to have."""
    popularity = model.recommender.popularity
    shown = lists[lists >= 0]
    later = pd.Index(model.item_ids).get_indexer(held_out[ITEM])
    later = later[later >= 0]
    return {
        "recommended_mean_popularity": float(popularity[shown].mean()) if len(shown) else 0.0,
        "held_out_mean_popularity": float(popularity[later].mean()) if len(later) else 0.0,
        "catalogue_mean_popularity": float(popularity.mean()) if len(popularity) else 0.0,
        "distinct_items_recommended": len(np.unique(shown)),
    }
