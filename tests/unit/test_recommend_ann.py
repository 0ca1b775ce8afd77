"""The approximate index: measured against the exact list on every build, floor enforced."""

from __future__ import annotations

import numpy as np
import pytest

from keel.families.recommendation.ann import ItemIndex


@pytest.fixture(scope="module")
def factors():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(3000, 16)).astype(np.float32)
    users = rng.normal(size=(400, 16)).astype(np.float32)
    return items, users


def test_a_build_reports_its_recall_and_raises_ef_until_the_floor(factors):
    items, users = factors
    built = ItemIndex.build(items, users, min_recall=0.97, ef_search=8)
    record = built.record
    assert built.used and record["recall_at_10"] >= 0.97
    assert record["items"] == 3000 and record["sampled_users"] == 400
    efs = [t["ef_search"] for t in record["tried"]]
    assert efs[0] == 8 and efs == sorted(efs) and len(efs) >= 2  # 8 is not enough here
    assert built.ef_search == efs[-1]


def test_an_index_below_the_floor_is_not_used(factors):
    items, users = factors
    impossible = ItemIndex.build(items, users, min_recall=1.01)
    assert not impossible.used and impossible.record["used"] is False
    assert impossible.record["tried"][-1]["ef_search"] == 1024


def test_candidates_and_the_package_round_trip(factors):
    items, users = factors
    built = ItemIndex.build(items, users, min_recall=0.9)
    found = built.candidates(users[:5], 10)
    assert found.shape == (5, 40)
    exact = np.argsort(-(users[:5] @ items.T), axis=1)[:, :10]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]) > 0.9
    arrays = built.arrays()
    assert arrays["ann.index"].dtype == np.uint8
    back = ItemIndex.from_arrays(arrays, {"ann": {**built.record, "ef_search": built.ef_search}})
    assert (back.candidates(users[:5], 10) == found).all()
    assert ItemIndex.from_arrays({}, {}) is None


@pytest.fixture(scope="module")
def indexed(movielens):
    from keel.families.recommendation.ann import attach_index
    from keel.families.recommendation.data import prepare_interactions
    from keel.families.recommendation.rules import Catalogue
    from keel.families.recommendation.train import fit_model
    from tests.unit.test_recommendation import config

    ratings, users, items = movielens
    data = prepare_interactions(ratings[ratings["user_id"] <= 300], config(), users, items)
    rules = {"cap": [{"where": {"genre": ["Drama"]}, "at_most": 2}]}
    model = fit_model("als", {"factors": 32}, data.frame, 0, Catalogue(data.items, "|", rules))
    record = attach_index(model, min_items=100, min_recall=0.9, seed=0)
    assert record["used"] and record["recall_at_10"] >= 0.9 and model.ann is not None
    return model


def test_served_lists_come_from_the_index_and_keep_rules_and_filters(indexed):
    from keel.families.recommendation.rules import Filters

    model = indexed
    index, model.ann = model.ann, None
    exact = [model.recommend(str(u), 10) for u in range(1, 41)]
    model.ann = index
    asked = []
    original = index.candidates
    index.candidates = lambda vectors, k: asked.append(len(vectors)) or original(vectors, k)
    try:
        approximate = [model.recommend(str(u), 10) for u in range(1, 41)]
        # a batch with a new user: the known ones from the index, the new one exactly
        lists, _, cold = model.rank(model.user_index(["1", "2", "nobody"]), 10)
    finally:
        del index.candidates
    assert asked == [1] * 40 + [2]
    assert cold.tolist() == [False, False, True] and (lists >= 0).all()
    overlap = np.mean(
        [
            len({i["item_id"] for i in a["items"]} & {i["item_id"] for i in b["items"]}) / 10
            for a, b in zip(approximate, exact, strict=True)
        ]
    )
    assert overlap >= 0.9
    drama = model.attributes.matches({"genre": ["Drama"]})
    for answer in approximate:
        columns = model.item_columns([i["item_id"] for i in answer["items"]])
        assert len(columns) == 10 and drama[columns].sum() <= 2
    # a filter few candidates pass: the request falls back to the exact ranking, still 10
    narrow = Filters.of({"where": {"genre": ["Documentary"]}})
    answer = model.recommend("1", 10, filters=narrow)
    index, model.ann = model.ann, None
    assert answer == model.recommend("1", 10, filters=narrow)
    model.ann = index


def test_the_index_travels_in_the_package(indexed, tmp_path):
    from keel.families.recommendation.task import RecommenderModel

    indexed.save(tmp_path)
    back = RecommenderModel.load(tmp_path)
    assert back.ann is not None and back.ann.ef_search == indexed.ann.ef_search
    assert back.recommend("7", 10) == indexed.recommend("7", 10)
