"""The recommendation task: interactions, splits, the Recommender contract, the package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.config import parse_config
from keel.errors import ConfigError, DataError
from keel.families.recommendation.data import (
    ITEM,
    TIME,
    USER,
    InteractionSplits,
    leaked,
    prepare_interactions,
    profile_interactions,
    split_interactions,
)
from keel.families.recommendation.task import RECOMMENDATION, RecommenderModel, evaluate_ranking
from keel.families.recommendation.train import fit_model

BASE = {
    "name": "ml",
    "data": "ratings.csv",
    "task": "recommendation",
    "user_column": "user_id",
    "item_column": "item_id",
    "time_column": "timestamp",
    "rating_column": "rating",
    "relevant_from": 4,
}
ALL = ["random", "popularity", "recent_popularity", "item_knn", "ease", "als", "bpr"]
SMALL = {
    "item_knn": {"neighbours": 20},
    "als": {"factors": 8, "iterations": 3},
    "bpr": {"factors": 8, "iterations": 5},
}


def config(**extra):
    return parse_config({**BASE, **extra})


@pytest.fixture(scope="module")
def small(movielens):
    ratings, users, items = movielens
    keep = ratings["user_id"] < 150
    return ratings[keep].reset_index(drop=True), users, items


@pytest.fixture(scope="module")
def data(small):
    ratings, users, items = small
    return prepare_interactions(ratings, config(), users, items)


@pytest.mark.parametrize("strategy", ["global_time", "user_time", "leave_last_out"])
def test_no_test_interaction_reaches_training(data, strategy):
    splits = split_interactions(data, strategy, 0.1, 0.2)
    assert leaked(splits) == []
    assert len(splits.test) and len(splits.validation) and len(splits.train)
    rows = len(splits.train) + len(splits.validation) + len(splits.test)
    dropped = sum(splits.report["repeats_dropped"].values())
    assert rows + dropped == data.n_rows
    if strategy == "global_time":
        assert splits.fit[TIME].max() < splits.test[TIME].min()
    if strategy == "leave_last_out":
        assert splits.test.groupby(USER).size().max() == 1


def test_the_leakage_check_can_fail(data):
    splits = split_interactions(data, "global_time", 0.1, 0.2)
    spoiled = InteractionSplits(
        splits.strategy,
        pd.concat([splits.train, splits.test.head(3)]),
        splits.validation,
        splits.test,
        splits.cutoffs,
    )
    problems = leaked(spoiled)
    assert any("3 test interactions" in p for p in problems)
    assert any("cut-off" in p for p in problems)
    later = splits.test.assign(**{TIME: splits.test[TIME] + 10**9})
    per_user = InteractionSplits("user_time", later, splits.validation, splits.test, {})
    assert any("after their test ones" in p for p in leaked(per_user))


def test_cold_start_users_are_those_without_training_history(data):
    splits = split_interactions(data, "global_time", 0.1, 0.2)
    known = set(splits.fit[USER])
    relevant = splits.test[splits.test["relevant"]]
    cold = set(relevant[USER]) - known
    assert splits.report["cold_start_test_users"] == len(cold) > 0
    assert splits.report["warm_test_users"] == relevant[USER].nunique() - len(cold)


def test_profile_and_report(data):
    p = profile_interactions(data)
    assert p["users"] == data.frame[USER].nunique() and p["items"] == data.frame[ITEM].nunique()
    assert 0 < p["head_share_of_interactions"] <= 1 and 0 <= p["popularity_gini"] < 1
    assert p["days"] > 100
    assert data.report["duplicates_dropped"] == 0
    assert data.report["users_missing_from_users_table"] == 0


def test_duplicates_and_missing_ids_are_reported(small):
    ratings, users, items = small
    doubled = pd.concat([ratings, ratings.head(5)])
    got = prepare_interactions(doubled, config(), users.iloc[5:], items)
    assert got.report["duplicates_dropped"] == 5
    assert got.report["users_missing_from_users_table"] == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.drop(columns="user_id"), "no column 'user_id' (keel.yaml user_column)"),
        (lambda r: r.iloc[:0], "has no rows"),
        (lambda r: r.assign(item_id=r["item_id"].where(r.index != 3)), "row 4: column 'item_id'"),
        (
            lambda r: r.assign(rating=r["rating"].astype(str).where(r.index != 2, "five")),
            "row 3: column 'rating'",
        ),
        (lambda r: r.assign(timestamp="not a time"), "neither numbers"),
    ],
)
def test_bad_interactions_are_one_clear_error(small, change, message):
    ratings, users, items = small
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare_interactions(change(ratings.copy()), config(), users, items)


def test_a_users_table_without_the_user_ids_is_an_error(small):
    ratings, users, items = small
    with pytest.raises(DataError, match="users table: no column 'user_id' to join on"):
        prepare_interactions(ratings, config(), users.drop(columns="user_id"), items)
    with pytest.raises(DataError, match="users table: no column 'agee'"):
        prepare_interactions(
            ratings, config(users="u.csv", sensitive_features=["agee"]), users, items
        )


def test_an_empty_test_period_is_an_error(small):
    ratings, users, items = small
    one_time = ratings.assign(timestamp=1)
    data = prepare_interactions(one_time, config(), users, items)
    with pytest.raises(DataError, match=r"period of split\.strategy global_time is empty"):
        split_interactions(data, "global_time", 0.1, 0.2)
    # a test period with nothing relevant in it is as good as empty
    late = ratings["timestamp"] >= ratings["timestamp"].quantile(0.7)
    disliked = ratings.assign(rating=ratings["rating"].where(~late, 1))
    data = prepare_interactions(disliked, config(), users, items)
    with pytest.raises(DataError, match="no test user has a relevant interaction"):
        split_interactions(data, "global_time", 0.1, 0.2)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"user_column": None}, "needs user_column"),
        ({"target": "rating"}, "has no target"),
        ({"candidates": ["lightgbm"]}, "not recommenders"),
        ({"sensitive_features": ["age"]}, "add users: FILE"),
        ({"relevant_from": 4, "rating_column": None}, "relevant_from needs rating_column"),
        ({"k": [0]}, "cut-offs between 1 and 1000"),
        ({"split": {"strategy": "random"}}, "must be one of 'global_time'"),
    ],
)
def test_config_mistakes_are_one_line(extra, message):
    with pytest.raises(ConfigError, match=message):
        config(**extra)


def test_unknown_metric_names_the_ranking_metrics():
    assert RECOMMENDATION.primary_name(None, [5, 10]) == "ndcg_at_10"
    assert RECOMMENDATION.primary_name(None, [5, 20]) == "ndcg_at_20"
    with pytest.raises(ConfigError, match="did you mean 'recall_at_10'"):
        RECOMMENDATION.primary_name("recal_at_10", [10])


@pytest.fixture(scope="module")
def fitted(data):
    splits = split_interactions(data, "global_time", 0.1, 0.2)
    return splits, {name: fit_model(name, SMALL.get(name, {}), splits.fit, 0) for name in ALL}


@pytest.mark.parametrize("name", ALL)
def test_recommender_contract(fitted, name, tmp_path: Path):
    _splits, models = fitted
    model = models[name]
    users = model.user_index(model.user_ids[:40])
    lists, scores, cold = model.rank(users, 10)
    assert lists.shape == (40, 10) and not cold.any()
    history = model.histories(users).toarray() > 0
    assert not np.take_along_axis(history, lists, 1).any(), "a seen item was recommended"
    assert np.all(np.diff(scores, axis=1) <= 1e-12), "lists are not ranked by score"
    # the package: NumPy arrays and JSON only, the same lists after loading
    model.save(tmp_path)
    again = RecommenderModel.load(tmp_path)
    assert np.array_equal(again.rank(users, 10)[0], lists)
    # nobody at all: popularity, and it says so
    nobody = model.recommend("no-such-user", k=5)
    assert nobody["cold_start"] and not nobody["known_user"]
    top = np.argsort(-model.recommender.popularity, kind="stable")[:5]
    assert [i["item_id"] for i in nobody["items"]] == list(model.item_ids[top])
    # a new user with a history in the request: folded in, history items never returned
    liked = list(model.item_ids[model.history[users[0]].indices[:5]])
    answer = model.recommend("new-user", k=5, history=liked)
    assert not answer["cold_start"] and len(answer["items"]) == 5
    assert not {i["item_id"] for i in answer["items"]} & set(liked)
    with pytest.raises(KeyError, match="nope"):
        model.recommend("new-user", history=["nope"])
    excluded = [i["item_id"] for i in answer["items"][:2]]
    again = model.recommend("new-user", k=5, history=liked, exclude=excluded)
    assert not {i["item_id"] for i in again["items"]} & set(excluded)


def test_item_models_fold_a_request_history_in_exactly(fitted):
    _, models = fitted
    for name in ("item_knn", "ease"):
        model = models[name]
        row = model.user_index([model.user_ids[3]])
        items = model.history[row[0]].indices
        known = model.recommend(model.user_ids[3], k=10)
        fresh = model.recommend("somebody-new", k=10, history=list(model.item_ids[items]))
        assert [i["item_id"] for i in known["items"]] == [i["item_id"] for i in fresh["items"]]


def test_als_fold_in_matches_implicit(fitted):
    from implicit.cpu.als import AlternatingLeastSquares

    _splits, models = fitted
    model = models["als"]
    als = AlternatingLeastSquares(factors=8, iterations=3, random_state=0, num_threads=1)
    als.item_factors = model.recommender.state["item_factors"]
    als.user_factors = model.recommender.state["user_factors"]
    row = model.history[7]
    theirs = als.recalculate_user(0, row)
    mine = model.recommender.fold_in(row.indices, row.data)
    np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)
    # the explanation splits the folded-in score exactly
    item = 11
    parts = model.recommender.contributions(row.indices, item)
    score = mine @ model.recommender.state["item_factors"][item]
    assert parts.sum() == pytest.approx(score, rel=1e-4)


def test_ease_weights_have_a_zero_diagonal_and_fit_the_data(fitted):
    _, models = fitted
    weights = models["ease"].recommender.state["weights"]
    assert np.allclose(np.diag(weights), 0.0)
    x = models["ease"].history.toarray()
    # EASE reconstructs the training matrix better than nothing at all
    assert np.linalg.norm(x - x @ weights) < np.linalg.norm(x)


def test_evaluation_is_chunk_independent_and_separates_cold_users(fitted):
    splits, models = fitted
    model = models["ease"]
    whole = evaluate_ranking(model, splits.test, [5, 10], chunk=10_000)
    chunks = evaluate_ranking(model, splits.test, [5, 10], chunk=7)
    for name in whole.per_user:
        np.testing.assert_allclose(whole.per_user[name], chunks.per_user[name], atol=1e-12)
    assert whole.cold.any() and (~whole.cold).any()
    popularity = evaluate_ranking(models["popularity"], splits.test, [10])
    cold = np.flatnonzero(whole.cold)
    assert whole.means(cold)["ndcg_at_10"] == pytest.approx(popularity.means(cold)["ndcg_at_10"])
    assert 0 < whole.beyond["coverage_at_10"] <= 1


def test_evaluation_of_a_fitted_model_equals_trec_eval(fitted):
    import ir_measures
    from ir_measures import AP, RR, R, nDCG

    splits, models = fitted
    model = models["ease"]
    result = evaluate_ranking(model, splits.test, [10])
    warm = np.flatnonzero(~result.cold)
    scores, allowed, _ = model.score_block(result.users[warm])
    relevant = splits.test[splits.test["relevant"]]
    column = dict(zip(model.item_ids, range(model.n_items), strict=True))

    def name(j: int) -> str:
        # trec_eval breaks ties by document name, descending: this makes it Keel's order
        return f"{model.n_items - j:08d}"

    users = set(result.user_ids[warm])
    qrels = [
        ir_measures.Qrel(u, name(column[i]) if i in column else f"new-{i}", 1)
        for u, i in zip(relevant["user"], relevant["item"], strict=True)
        if u in users
    ]
    run = [
        ir_measures.ScoredDoc(result.user_ids[w], name(j), float(scores[n, j]))
        for n, w in enumerate(warm)
        for j in np.flatnonzero(allowed[n])
    ]
    names = {nDCG @ 10: "ndcg_at_10", AP @ 10: "map_at_10", RR: "mrr", R @ 10: "recall_at_10"}
    theirs = {
        (m.query_id, names[m.measure]): m.value
        for m in ir_measures.iter_calc(list(names), qrels, run)
    }
    # pytrec_eval reads scores through text, so scores a few ulps apart can tie there:
    # users whose first relevant item has such a near-tie are left out of the comparison
    clear = []
    for n, user in enumerate(result.user_ids[warm]):
        mine = relevant.loc[relevant["user"] == user, "item"]
        items = [column[i] for i in mine if i in column and allowed[n, column[i]]]
        best = max(scores[n, j] for j in items)
        clear.append(np.isclose(scores[n][allowed[n]], best, rtol=1e-6, atol=0).sum() == 1)
    clear = np.array(clear)
    assert clear.mean() > 0.8
    for metric in names.values():
        mine = result.per_user[metric][warm][clear]
        other = np.array([theirs[(u, metric)] for u in result.user_ids[warm]])[clear]
        np.testing.assert_allclose(mine, other, rtol=0, atol=1e-9, err_msg=metric)


def test_item_knn_in_blocks_equals_one_block(fitted, monkeypatch):
    import keel.families.recommendation.models as recommenders

    splits, models = fitted
    whole = models["item_knn"].recommender._weights().toarray()
    monkeypatch.setattr(recommenders, "KNN_BLOCK_CELLS", 5_000)  # a few items per block
    blocked = fit_model("item_knn", SMALL["item_knn"], splits.fit, 0)
    assert np.array_equal(blocked.recommender._weights().toarray(), whole)
    assert (np.count_nonzero(whole, axis=0) <= SMALL["item_knn"]["neighbours"]).all()
