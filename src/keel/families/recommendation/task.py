"""The recommendation task: a model package that ranks items for users, and its metrics.

:class:`RecommenderModel` is what a registered recommender *is*: the fitted
:class:`~keel.families.recommendation.models.Recommender`, the user and item ids it knows, each
known user's training history (seen items are never recommended again) and the
popularity fallback. It answers for known users, for new users with a history sent
in the request (folded in, no retraining) and for users with nothing at all — with
popularity, flagged ``cold_start`` so that no caller mistakes it for a personal list.
It saves as ``.npz`` + JSON and loads with NumPy only.

:func:`evaluate_ranking` ranks every test user over the full catalogue (every item the
user has not had in training; never sampled negatives) one chunk of users at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from keel.evaluation import MetricSet
from keel.evaluation._ranking import (
    coverage,
    diversity,
    first_relevant_rank,
    mean_popularity,
    metric_name,
    novelty,
    rank_metrics,
    ranking_directions,
)
from keel.families.recommendation.ann import ItemIndex
from keel.families.recommendation.coldstart import Segments
from keel.families.recommendation.models import Recommender, restore
from keel.families.recommendation.rules import (
    Filters,
    ItemAttributes,
    ItemRules,
    capped_top_k,
    item_mask,
)
from keel.tasks import RankingTask, register

CHUNK_USERS = 512
"""Users scored at once: memory is ``CHUNK_USERS × items`` floats, whatever the users."""
CHUNK_CELLS = 10_000_000
"""…and at most this many user × item cells (a large catalogue scores fewer users)."""


def chunk_users(n_items: int, chunk: int = CHUNK_USERS) -> int:
    """How many users to score at once for a catalogue of ``n_items``."""
    return max(1, min(chunk, CHUNK_CELLS // max(1, n_items)))


PACKAGE_ARRAYS = "recommender.npz"
PACKAGE_META = "recommender.json"


def _no_exact(*args: Any, **kwargs: Any) -> dict[str, float]:
    raise TypeError("recommendation metrics are per user: use keel.tasks.evaluate_ranking")


class RecommendationTask(RankingTask):
    """``task: recommendation``: rank items for users from their interactions."""

    name = "recommendation"
    metrics: ClassVar[MetricSet] = MetricSet(
        exact=_no_exact,
        fast=_no_exact,
        directions=ranking_directions((5, 10, 20)),
        default="ndcg_at_10",
    )
    fairness_headline = "ndcg_at_10"


RECOMMENDATION = register(RecommendationTask())


@dataclass
class RecommenderModel:
    """A fitted recommender with the ids, histories and fallback it answers with."""

    recommender: Recommender
    user_ids: np.ndarray
    item_ids: np.ndarray
    history: sp.csr_matrix = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)
    attributes: ItemAttributes = field(default_factory=ItemAttributes, repr=False)
    rules_spec: dict[str, Any] = field(default_factory=dict)
    segments: Segments = field(default_factory=Segments, repr=False)
    ann: ItemIndex | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids).astype(str)
        self.item_ids = np.asarray(self.item_ids).astype(str)
        self._users = pd.Index(self.user_ids)
        self._items = pd.Index(self.item_ids)
        self.rules = ItemRules.resolve(self.rules_spec, self.item_ids, self.attributes)

    def with_catalogue(
        self, attributes: ItemAttributes, rules_spec: dict[str, Any] | None
    ) -> RecommenderModel:
        """Give the model the catalogue's attributes and keel.yaml's business rules."""
        self.attributes = attributes
        self.rules_spec = dict(rules_spec or {})
        self.rules = ItemRules.resolve(self.rules_spec, self.item_ids, attributes)
        return self

    @property
    def name(self) -> str:
        """The recommender's kind (``ease``, ``popularity``, ...)."""
        return self.recommender.name

    @property
    def n_items(self) -> int:
        """Size of the catalogue."""
        return len(self.item_ids)

    def user_index(self, users: Iterable[Any]) -> np.ndarray:
        """Row of each user id in the model (-1: unknown in training)."""
        ids = [str(u) for u in users]
        if len(ids) == 1:  # one request: a hash lookup, no Index built
            try:
                row = self._users.get_loc(ids[0])
            except KeyError:
                row = -1
            if isinstance(row, int | np.integer):
                return np.array([row], dtype=np.int64)
        return self._users.get_indexer(pd.Index(ids))

    def item_columns(self, items: Iterable[Any]) -> np.ndarray:
        """Column of each item id (-1: not in the catalogue)."""
        return self._items.get_indexer(pd.Index([str(i) for i in items]))

    def item_index(self, items: Iterable[Any]) -> tuple[np.ndarray, list[str]]:
        """Column of each item id, and the ids the catalogue does not hold."""
        ids = [str(i) for i in items]
        if not ids:  # the usual request: nothing to look up
            return np.zeros(0, dtype=np.int64), []
        index = self.item_columns(ids)
        return index[index >= 0], [i for i, j in zip(ids, index, strict=True) if j < 0]

    def histories(self, users: np.ndarray, extra: Sequence[np.ndarray] | None = None):
        """Sparse histories of ``users``: training rows plus ``extra`` items per user."""
        users = np.asarray(users, dtype=np.int64)
        known = np.flatnonzero(users >= 0)
        pick = sp.csr_matrix(
            (np.ones(len(known), dtype=np.float32), (known, users[known])),
            shape=(len(users), len(self.user_ids)),
        )
        rows = (pick @ self.history).tocsr()
        if extra is not None:
            r = [i for i, items in enumerate(extra) for _ in items]
            c = [int(j) for items in extra for j in items]
            added = sp.csr_matrix((np.ones(len(c), dtype=np.float32), (r, c)), shape=rows.shape)
            rows = rows.maximum(added).tocsr()
        return rows

    def score_block(
        self,
        users: np.ndarray,
        extra: Sequence[np.ndarray] | None = None,
        exclude: Sequence[np.ndarray] | None = None,
        only: np.ndarray | None = None,
        segments: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores of every item for ``users``, which items may be ranked, who is cold.

        A user with no history at all (unknown, nothing sent) gets the popularity
        fallback — of their segment when ``segments`` (one row of ``self.segments`` per
        user, -1: none) names one — and is marked cold; seen, excluded and rule-blocked
        items are not allowed, nor items outside ``only`` (a request's filters).
        """
        users = np.asarray(users, dtype=np.int64)
        history = self.histories(users, extra)
        cold = history.getnnz(axis=1) == 0
        scores = np.empty((len(users), self.n_items), dtype=np.float64)
        if (~cold).any():
            scores[~cold] = self.recommender.scores(users[~cold], history[~cold])
        scores[cold] = self.recommender.popularity
        if segments is not None and self.segments.active:
            rows = np.flatnonzero(cold & (np.asarray(segments) >= 0))
            scores[rows] = self.segments.popularity[np.asarray(segments)[rows]]
        allowed = history.toarray() == 0
        if self.rules.blocked.any():
            allowed &= ~self.rules.blocked
        if only is not None:
            allowed &= only
        if exclude is not None:
            for row, items in enumerate(exclude):
                allowed[row, np.asarray(items, dtype=np.int64)] = False
        return scores, allowed, cold

    def rank(
        self,
        users: np.ndarray,
        k: int,
        extra: Sequence[np.ndarray] | None = None,
        exclude: Sequence[np.ndarray] | None = None,
        only: np.ndarray | None = None,
        segments: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` item columns and scores per user, and who got popularity (cold start).

        Items in the history (training + ``extra``), in ``exclude``, blocked by a rule or
        outside ``only`` are never returned; caps hold before the cut. A cold user with a
        segment gets that segment's popularity.
        """
        users = np.asarray(users, dtype=np.int64)
        if self.ann is None:
            return self._rank_exact(users, k, extra, exclude, only, segments)
        lists, scores, done = self._rank_approximate(users, k, extra, exclude, only)
        cold = np.zeros(len(users), dtype=bool)
        rest = np.flatnonzero(~done)
        if len(rest):  # cold users and short lists: ranked exactly
            lists[rest], scores[rest], cold[rest] = self._rank_exact(
                users[rest],
                k,
                None if extra is None else [extra[i] for i in rest],
                None if exclude is None else [exclude[i] for i in rest],
                only,
                None if segments is None else np.asarray(segments)[rest],
            )
        return lists, scores, cold

    def _rank_exact(
        self,
        users: np.ndarray,
        k: int,
        extra: Sequence[np.ndarray] | None,
        exclude: Sequence[np.ndarray] | None,
        only: np.ndarray | None,
        segments: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores, allowed, cold = self.score_block(users, extra, exclude, only, segments)
        lists = capped_top_k(scores, k, allowed, self.rules.caps)
        picked = np.take_along_axis(scores, np.maximum(lists, 0), 1)
        return lists, np.where(lists >= 0, picked, np.nan), cold

    def _rank_approximate(
        self,
        users: np.ndarray,
        k: int,
        extra: Sequence[np.ndarray] | None,
        exclude: Sequence[np.ndarray] | None,
        only: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lists from the HNSW index, and which rows it answered (not cold, not short)."""
        assert self.ann is not None
        history = self.histories(users, extra)
        lists = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), np.nan)
        done = np.zeros(len(users), dtype=bool)
        warm = np.flatnonzero(history.getnnz(axis=1) > 0)
        if not len(warm):
            return lists, scores, done
        vectors = self.recommender.user_vectors(users[warm], history[warm])
        items = self.recommender.item_vectors()
        found = self.ann.candidates(vectors, k)
        for at, row in enumerate(warm):
            columns = found[at][found[at] >= 0]
            keep = ~np.isin(columns, history[row].indices) & ~self.rules.blocked[columns]
            if only is not None:
                keep &= only[columns]
            if exclude is not None:
                keep &= ~np.isin(columns, np.asarray(exclude[row], dtype=np.int64))
            columns = columns[keep]
            values = items[columns] @ vectors[at]
            order = np.lexsort((columns, -values))
            caps = [(mask[columns[order]], limit) for mask, limit in self.rules.caps]
            picked = capped_top_k(values[order][None, :], k, None, caps)[0]
            picked = picked[picked >= 0]
            if len(picked) < k:
                continue  # the candidates ran out: this row is ranked exactly
            lists[row] = columns[order][picked]
            scores[row] = values[order][picked]
            done[row] = True
        return lists, scores, done

    def recommend(
        self,
        user: Any,
        k: int = 10,
        history: Sequence[Any] = (),
        exclude: Sequence[Any] = (),
        filters: Filters | None = None,
        user_attributes: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Top-``k`` of one user by ids, within ``filters`` and keel.yaml's rules.

        A cold user's list is their segment's popularity: from ``user_attributes`` (sent
        with the request) or the users table; the answer's ``segment`` names it.

        Unknown item ids raise ``KeyError`` naming them; a condition on an attribute the
        catalogue lacks raises :class:`~keel.families.recommendation.rules.RuleError`.
        """
        extra, unknown = self.item_index(history)
        excluded, unknown_excluded = self.item_index(exclude)
        only = None
        if filters is not None and not filters.empty:
            only, unknown_filtered = item_mask(filters, self._items, self.attributes)
            unknown_excluded += unknown_filtered
        if unknown or unknown_excluded:
            raise KeyError(sorted(set(unknown + unknown_excluded)))
        index = self.user_index([user])
        segment = self.segments.of_users([user], [user_attributes])
        lists, scores, cold = self.rank(index, k, [extra], [excluded], only, segment)
        items = [
            {"item_id": str(self.item_ids[j]), "score": float(s)}
            for j, s in zip(lists[0], scores[0], strict=True)
            if j >= 0
        ]
        answer = {"items": items, "cold_start": bool(cold[0]), "known_user": bool(index[0] >= 0)}
        if cold[0] and self.segments.active:
            answer["segment"] = self.segments.name(int(segment[0]))
        return answer

    def explain(self, user_row: int, item: int, top: int = 3) -> list[tuple[str, float]]:
        """The history items that raised ``item``'s score most (item-based models)."""
        history = self.history[user_row].indices if user_row >= 0 else np.array([], int)
        weights = self.recommender.contributions(history, item)
        if weights is None or not len(history):
            return []
        order = np.argsort(-weights, kind="stable")[:top]
        return [
            (str(self.item_ids[history[i]]), float(weights[i])) for i in order if weights[i] > 0
        ]

    # --- the package ---------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        """Write ``recommender.npz`` (arrays) and ``recommender.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"model.{k}": v for k, v in self.recommender.arrays().items()}
        h = self.history.tocsr()
        arrays |= {"history.data": h.data, "history.indices": h.indices}
        arrays |= {"history.indptr": h.indptr, "users": self.user_ids, "items": self.item_ids}
        arrays |= self.attributes.arrays()
        arrays |= self.segments.arrays() if self.segments.active else {}
        arrays |= self.ann.arrays() if self.ann is not None else {}
        np.savez_compressed(folder / PACKAGE_ARRAYS, **arrays)
        meta = {
            "name": self.name,
            "params": self.recommender.params,
            "seed": self.recommender.seed,
            "info": self.info,
            "attribute_separator": self.attributes.separator,
            "rules": self.rules_spec,
            "segment_attributes": self.segments.attributes,
            "ann": None
            if self.ann is None
            else {**self.ann.record, "ef_search": self.ann.ef_search},
        }
        (folder / PACKAGE_META).write_text(json.dumps(meta, indent=1, default=str))

    @classmethod
    def load(cls, folder: str | Path) -> RecommenderModel:
        """Read a saved model (NumPy only: no pickle, no training code)."""
        folder = Path(folder)
        meta = json.loads((folder / PACKAGE_META).read_text())
        with np.load(folder / PACKAGE_ARRAYS, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
        model = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        users, items = arrays["users"], arrays["items"]
        history = sp.csr_matrix(
            (arrays["history.data"], arrays["history.indices"], arrays["history.indptr"]),
            shape=(len(users), len(items)),
        )
        recommender = restore(meta["name"], meta["params"], model, meta.get("seed", 0))
        attributes = ItemAttributes.from_arrays(arrays, meta.get("attribute_separator", "|"))
        segments = Segments.from_arrays(arrays, list(meta.get("segment_attributes") or []))
        index = ItemIndex.from_arrays(arrays, meta)
        return cls(
            recommender,
            users,
            items,
            history,
            meta.get("info", {}),
            attributes,
            meta.get("rules") or {},
            segments,
            index if index is not None and index.used else None,
        )


@dataclass
class RankingResult:
    """Per-user metrics of one model on held-out interactions, and its lists."""

    users: np.ndarray  # model rows (-1: cold start) of the users evaluated
    user_ids: np.ndarray
    cold: np.ndarray
    per_user: dict[str, np.ndarray] = field(repr=False)
    lists: np.ndarray = field(repr=False)
    beyond: dict[str, float] = field(default_factory=dict)

    def means(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """Mean of every per-user metric over ``rows`` (all users when None)."""
        pick = slice(None) if rows is None else rows
        return {
            k: float(np.mean(v[pick])) if len(v[pick]) else float("nan")
            for k, v in self.per_user.items()
        }


def evaluate_ranking(
    model: RecommenderModel,
    held_out: pd.DataFrame,
    ks: Sequence[int],
    attributes: np.ndarray | None = None,
    chunk: int = CHUNK_USERS,
    progress: Any = None,
    segments: bool = True,
) -> RankingResult:
    """Rank the full catalogue for every user with a relevant held-out interaction.

    ``held_out`` has ``user``, ``item`` and ``relevant`` columns. Items the user had in
    training are not ranked; relevant items outside the catalogue count in ``R`` (no
    model can recommend them). Cold-start users (no training history) get the
    popularity fallback, as when served: of their segment (the users table), unless
    ``segments`` is False (the global list, to measure what segments gain).
    """
    relevant = held_out[held_out["relevant"]]
    user_ids = np.sort(relevant["user"].unique()).astype(str)
    users = model.user_index(user_ids)
    segment = model.segments.of_users(user_ids) if segments else None
    owner = pd.Index(user_ids).get_indexer(relevant["user"].astype(str))
    column = model.item_columns(relevant["item"])
    n_relevant = np.bincount(owner, minlength=len(user_ids))  # R counts unknown items too
    inside = column >= 0
    k_max = max(ks)
    chunk = chunk_users(model.n_items, chunk)
    per_user: dict[str, list[np.ndarray]] = {}
    lists = np.full((len(users), k_max), -1, dtype=np.int64)
    order = np.argsort(owner[inside], kind="stable")
    owners, columns = owner[inside][order], column[inside][order]
    bounds = np.searchsorted(owners, np.arange(len(user_ids) + 1))
    for start in range(0, len(users), chunk):
        stop = min(start + chunk, len(users))
        part = None if segment is None else segment[start:stop]
        scores, allowed, _ = model.score_block(users[start:stop], segments=part)
        top = capped_top_k(scores, k_max, allowed, model.rules.caps)
        wanted = np.zeros(scores.shape, dtype=bool)
        rows = owners[bounds[start] : bounds[stop]] - start
        wanted[rows, columns[bounds[start] : bounds[stop]]] = True
        hits = np.take_along_axis(wanted, np.maximum(top, 0), 1) & (top >= 0)
        each = [columns[bounds[u] : bounds[u + 1]] for u in range(start, stop)]
        first = first_relevant_rank(scores, each, allowed)
        values = rank_metrics(hits, n_relevant[start:stop], first, ks)
        for name, value in values.items():
            per_user.setdefault(name, []).append(value)
        lists[start:stop] = top
        if progress is not None:
            progress(stop, len(users))
    metrics = {k: np.concatenate(v) for k, v in per_user.items()} if per_user else {}
    popularity = model.recommender.popularity
    n_users = len(model.user_ids)
    beyond = {}
    for k in ks:
        top = lists[:, :k]
        beyond[metric_name("coverage", k)] = coverage(top, model.n_items)
        beyond[metric_name("novelty", k)] = novelty(top, popularity, n_users)
        beyond[metric_name("popularity", k)] = mean_popularity(top, popularity)
        if attributes is not None:
            beyond[metric_name("diversity", k)] = diversity(top, attributes)
    return RankingResult(users, user_ids, users < 0, metrics, lists, beyond)
