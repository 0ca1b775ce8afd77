"""Keel's ranking metrics equal trec_eval's (through ir-measures) on the same lists."""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
from ir_measures import AP, RR, P, R, Success, nDCG

from keel.evaluation._ranking import (
    coverage,
    diversity,
    first_relevant_rank,
    mean_intervals,
    novelty,
    rank_metrics,
    top_k,
)

KS = (1, 5, 10, 20)


def _case(seed: int, users: int = 60, items: int = 80):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(users, items))
    allowed = rng.random((users, items)) > 0.3
    relevant = [
        rng.choice(items, size=int(rng.integers(1, 12)), replace=False) for _ in range(users)
    ]
    return scores, allowed, relevant


def _keel(scores, allowed, relevant):
    top = top_k(scores, max(KS), allowed)
    hits = np.array(
        [np.isin(row, rel) & (row >= 0) for row, rel in zip(top, relevant, strict=True)]
    )
    n_rel = np.array([len(r) for r in relevant])
    first = first_relevant_rank(scores, relevant, allowed)
    return rank_metrics(hits, n_rel, first, KS)


def _reference(scores, allowed, relevant):
    qrels = [ir_measures.Qrel(str(u), str(i), 1) for u, rel in enumerate(relevant) for i in rel]
    run = [
        ir_measures.ScoredDoc(str(u), str(i), float(scores[u, i]))
        for u in range(len(scores))
        for i in np.flatnonzero(allowed[u])
    ]
    measures = [RR] + [m @ k for k in KS for m in (nDCG, AP, P, R, Success)]
    names = {RR: "mrr"}
    for k in KS:
        names |= {
            nDCG @ k: f"ndcg_at_{k}",
            AP @ k: f"map_at_{k}",
            P @ k: f"precision_at_{k}",
            R @ k: f"recall_at_{k}",
            Success @ k: f"hit_rate_at_{k}",
        }
    out = {name: np.zeros(len(scores)) for name in names.values()}
    for metric in ir_measures.iter_calc(measures, qrels, run):
        out[names[metric.measure]][int(metric.query_id)] = metric.value
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_metric_equals_trec_eval_per_user(seed):
    case = _case(seed)
    mine, theirs = _keel(*case), _reference(*case)
    assert set(mine) == set(theirs)
    for name in mine:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=0, atol=1e-9, err_msg=name)


def test_a_wrong_ranking_is_caught():
    scores, allowed, relevant = _case(5)
    mine = _keel(-scores, allowed, relevant)  # the list upside down
    theirs = _reference(scores, allowed, relevant)
    assert not np.allclose(mine["ndcg_at_10"], theirs["ndcg_at_10"])


def test_top_k_breaks_ties_by_index_and_never_returns_seen_items():
    scores = np.array([[1.0, 3.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    allowed = np.array([[True, True, False, True, True], [False] * 4 + [True]])
    top = top_k(scores, 3, allowed)
    assert top[0].tolist() == [1, 3, 0]
    assert top[1].tolist() == [4, -1, -1]
    assert top_k(np.array([[0.0, 5.0, 5.0, 5.0]]), 2).tolist() == [[1, 2]]


def test_first_rank_is_over_the_full_ranking():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    assert first_relevant_rank(scores, [np.array([3])]).tolist() == [4]
    allowed = np.array([[False, True, True, True]])
    assert first_relevant_rank(scores, [np.array([3])], allowed).tolist() == [3]
    assert first_relevant_rank(scores, [np.array([0])], allowed).tolist() == [0]


def test_beyond_accuracy_measures():
    lists = np.array([[0, 1], [1, 2]])
    assert coverage(lists, 4) == 0.75
    counts = np.array([8, 4, 2, 1])
    assert novelty(lists, counts, 8) == pytest.approx(np.mean([0, 1, 1, 2]))
    genres = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    assert diversity(lists, genres) == pytest.approx(0.5)


def test_intervals_cover_the_mean_and_resample_users():
    values = {"ndcg_at_10": np.linspace(0, 1, 200)}
    interval = mean_intervals(values, resamples=200, seed=1)["ndcg_at_10"]
    assert interval.low < 0.5 < interval.high
    assert interval.value == pytest.approx(0.5)
