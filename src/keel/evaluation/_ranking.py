"""Ranking metrics of recommendations over the full catalogue, per user (pure NumPy).

Every metric is computed per user from the user's ranked top-K list and the set of
items relevant to the user in the test period; a model's value is the mean over users
with at least one relevant item. The definitions are trec_eval's (what ir-measures and
ranx compute, and what the tests compare against to 1e-9):

- ``ndcg_at_k``: DCG of the top-K with gain 1 per relevant item and discount
  ``log2(rank + 1)``, over the ideal DCG of ``min(R, K)`` relevant items.
- ``map_at_k``: the sum of precision at each relevant rank within K, over ``R`` (the
  number of relevant items; trec_eval's AP@K, not RecBole's ``min(R, K)``).
- ``mrr``: one over the rank of the first relevant item in the *full* ranking (no
  cut-off), 0 when no relevant item can be ranked.
- ``precision_at_k`` (hits / K), ``recall_at_k`` (hits / R), ``hit_rate_at_k``
  (at least one hit).

Beyond accuracy, over every user's list: ``coverage_at_k`` (share of the catalogue
recommended to someone), ``novelty_at_k`` (mean self-information ``-log2`` of the share
of training users who interacted with a recommended item), ``popularity_at_k`` (mean
training interactions of a recommended item), ``diversity_at_k`` (mean pairwise
``1 - Jaccard`` of the recommended items' attribute sets).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keel.evaluation._bootstrap import Interval, _interval, _resample_indices

ACCURACY = ("ndcg", "map", "precision", "recall", "hit_rate")
"""Per-user metrics at each cut-off K (named ``<metric>_at_<K>``)."""


def metric_name(metric: str, k: int | None = None) -> str:
    """``ndcg_at_10``; ``mrr`` (no cut-off)."""
    return metric if k is None else f"{metric}_at_{k}"


def ranking_directions(ks: Sequence[int]) -> dict[str, bool]:
    """Every per-user metric name → higher is better (all of them)."""
    out = {metric_name(m, k): True for k in ks for m in ACCURACY}
    out["mrr"] = True
    return out


def rank_metrics(
    hits: np.ndarray, n_relevant: np.ndarray, first_rank: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user metrics from ranked hits.

    Parameters
    ----------
    hits
        ``(users, K_max)`` booleans: the item at each rank is relevant.
    n_relevant
        ``(users,)`` number of relevant items of each user (``R``, at least 1).
    first_rank
        ``(users,)`` 1-based rank of the first relevant item in the full ranking, 0
        when none is ranked.
    ks
        The cut-offs (each at most ``K_max``).
    """
    hits = np.asarray(hits, dtype=np.float64)
    users, k_max = hits.shape
    relevant = np.asarray(n_relevant, dtype=np.float64)
    if users and relevant.min() < 1:
        raise ValueError("every user needs at least one relevant item")
    discount = 1.0 / np.log2(np.arange(2, k_max + 2))
    cumulative = np.cumsum(hits, axis=1)
    precision_at_rank = cumulative / np.arange(1, k_max + 1)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        if k > k_max:
            raise ValueError(f"cut-off {k} is beyond the {k_max} items ranked")
        found = cumulative[:, k - 1]
        dcg = hits[:, :k] @ discount[:k]
        ideal = np.cumsum(discount[:k])[np.minimum(relevant, k).astype(int) - 1]
        out[metric_name("ndcg", k)] = dcg / ideal
        out[metric_name("map", k)] = (hits[:, :k] * precision_at_rank[:, :k]).sum(1) / relevant
        out[metric_name("precision", k)] = found / k
        out[metric_name("recall", k)] = found / relevant
        out[metric_name("hit_rate", k)] = (found > 0).astype(np.float64)
    rank = np.asarray(first_rank, dtype=np.float64)
    out["mrr"] = np.divide(1.0, rank, out=np.zeros_like(rank), where=rank > 0)
    return out


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` best-scored columns of each row, best first.

    Ties are broken by the lower column index, so every ranking is reproducible;
    columns where ``allowed`` is False (items the user has seen) are never returned
    while an allowed one is left (``-1`` pads a row with fewer allowed items).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    rows, columns = scores.shape
    k = min(k, columns)
    if k == 0 or rows == 0:
        return np.zeros((rows, k), dtype=np.int64)
    if k < columns:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        boundary = np.take_along_axis(scores, part, 1).min(1)
        # a tie across the boundary: argpartition's pick is arbitrary, sort the row
        above = (scores > boundary[:, None]).sum(1)
        tied = (scores == boundary[:, None]).sum(1)
        exact = above + tied > k
    else:
        part = np.tile(np.arange(columns), (rows, 1))
        exact = np.zeros(rows, dtype=bool)
    picked = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -picked), axis=1)
    best = np.take_along_axis(part, order, 1)
    for row in np.flatnonzero(exact):
        best[row] = np.lexsort((np.arange(columns), -scores[row]))[:k]
    if allowed is not None:
        best = np.where(np.take_along_axis(scores, best, 1) == -np.inf, -1, best)
    return best


def first_relevant_rank(
    scores: np.ndarray, relevant: Sequence[np.ndarray], allowed: np.ndarray | None = None
) -> np.ndarray:
    """1-based rank of each row's best relevant item in the full ranking (0: none ranked).

    Ranks follow :func:`top_k` (ties broken by the lower column index); items not
    ``allowed`` are not ranked.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    out = np.zeros(len(scores), dtype=np.int64)
    for row, items in enumerate(relevant):
        items = np.asarray(items, dtype=np.int64)
        items = items[np.isfinite(scores[row, items])] if len(items) else items
        if not len(items):
            continue
        values = scores[row, items]
        best = values.max()
        item = items[values == best].min()
        line = scores[row]
        out[row] = int((line > best).sum() + (line[:item] == best).sum() + 1)
    return out


def coverage(lists: np.ndarray, n_items: int) -> float:
    """Share of the catalogue in at least one list."""
    shown = np.unique(lists[lists >= 0])
    return float(len(shown) / n_items) if n_items else 0.0


def novelty(lists: np.ndarray, item_users: np.ndarray, n_users: int) -> float:
    """Mean self-information ``-log2(users of item / users)`` of recommended items."""
    shown = lists[lists >= 0]
    if not len(shown) or not n_users:
        return 0.0
    share = np.maximum(item_users[shown], 1) / n_users
    return float(np.mean(-np.log2(share)))


def mean_popularity(lists: np.ndarray, item_counts: np.ndarray) -> float:
    """Mean number of training interactions of a recommended item."""
    shown = lists[lists >= 0]
    return float(np.mean(item_counts[shown])) if len(shown) else 0.0


def diversity(lists: np.ndarray, attributes: np.ndarray) -> float:
    """Mean intra-list distance ``1 - Jaccard`` of the items' attribute sets.

    ``attributes`` is an ``(items, attribute values)`` 0/1 matrix; an item with no
    attribute is at distance 1 from every other.
    """
    values = []
    matrix = np.asarray(attributes, dtype=np.float64)
    for items in lists:
        items = items[items >= 0]
        if len(items) < 2:
            continue
        x = matrix[items]
        inter = x @ x.T
        size = x.sum(1)
        union = size[:, None] + size[None, :] - inter
        jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        upper = np.triu_indices(len(items), 1)
        values.append(float(np.mean(1.0 - jaccard[upper])))
    return float(np.mean(values)) if values else 0.0


def mean_intervals(
    per_user: dict[str, np.ndarray], resamples: int = 300, seed: int = 0
) -> dict[str, Interval]:
    """Each metric's mean over users with its 95 % bootstrap interval (users resampled)."""
    names = list(per_user)
    if not names:
        return {}
    n = len(per_user[names[0]])
    if n == 0:
        return {name: Interval(float("nan"), float("nan"), float("nan")) for name in names}
    rows = _resample_indices(n, resamples, seed) if resamples else np.zeros((0, n), dtype=int)
    out = {}
    for name in names:
        values = np.asarray(per_user[name], dtype=np.float64)
        samples = values[rows].mean(1) if len(rows) else np.array([])
        out[name] = _interval(float(values.mean()), list(samples))
    return out


__all__ = [
    "ACCURACY",
    "coverage",
    "diversity",
    "first_relevant_rank",
    "mean_intervals",
    "mean_popularity",
    "metric_name",
    "novelty",
    "rank_metrics",
    "ranking_directions",
    "top_k",
]
