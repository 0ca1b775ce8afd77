"""Filters and business rules: applied before the top-K cut, on every path, clearly refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from keel.errors import KeelInputError
from keel.evaluation._ranking import top_k
from keel.families.recommendation.batch import recommend_file
from keel.families.recommendation.config import RecommendSection
from keel.families.recommendation.data import prepare_interactions
from keel.families.recommendation.package import LoadedRecommender
from keel.families.recommendation.rules import (
    Catalogue,
    Filters,
    ItemAttributes,
    ItemRules,
    RuleError,
    capped_top_k,
    item_mask,
    read_filters,
)
from keel.families.recommendation.serve import create_recommender_app
from keel.families.recommendation.task import RecommenderModel, evaluate_ranking
from keel.families.recommendation.train import fit_model
from tests.unit.test_recommendation import config

RULES = {
    "never": ["50"],  # Star Wars, the most popular film, is never recommended
    "never_where": {"genre": ["Horror"]},
    "cap": [{"where": {"genre": ["Drama"]}, "at_most": 2}],
}


@pytest.fixture(scope="module")
def data(movielens):
    ratings, users, items = movielens
    items = items.assign(available=np.arange(len(items)) % 5 != 0)
    return prepare_interactions(ratings[ratings["user_id"] <= 120], config(), users, items)


@pytest.fixture(scope="module")
def plain(data) -> RecommenderModel:
    return fit_model("item_knn", {"neighbours": 30}, data.frame, 0, Catalogue(data.items))


@pytest.fixture(scope="module")
def ruled(data) -> RecommenderModel:
    return fit_model(
        "item_knn", {"neighbours": 30}, data.frame, 0, Catalogue(data.items, "|", RULES)
    )


def _genres(model: RecommenderModel, items: list[str]) -> list[set[str]]:
    column = model.attributes.columns["genre"]
    return [set(column[model.item_columns([i])[0]].split("|")) for i in items]


def test_attributes_keep_filters_not_titles(plain):
    names = plain.attributes.names()
    assert {"genre", "available", "year"} <= set(names)
    assert "title" not in names  # 1,600 distinct titles are not a filter
    assert plain.attributes.columns["available"].dtype == bool


def test_conditions_any_of_equals_compare_and_not_in(plain):
    a = plain.attributes
    genre = a.columns["genre"]
    comedy = a.matches({"genre": ["Comedy"]})
    assert comedy.sum() == sum("Comedy" in g.split("|") for g in genre) > 0
    both = a.matches({"genre": ["Comedy"], "available": True})
    assert (both == (comedy & a.columns["available"])).all()
    late = a.matches({"year": {">=": 1995}})
    assert (late == (np.nan_to_num(a.columns["year"], nan=0) >= 1995)).all()
    assert (a.matches({"genre": {"not_in": ["Comedy"]}}) == (~comedy & (genre != ""))).all()
    with pytest.raises(RuleError, match=r"where\.colour: not an item attribute.*genre"):
        a.matches({"colour": ["red"]})
    with pytest.raises(RuleError, match="compares numbers"):
        a.matches({"genre": {">": 3}})
    with pytest.raises(RuleError, match="true/false"):
        a.matches({"available": "yes"})
    with pytest.raises(RuleError, match="one of =="):
        a.matches({"year": {"~": 3}})


def _seen(model: RecommenderModel, user: str) -> set[str]:
    row = model.user_index([user])[0]
    return set(model.item_ids[model.history[row].indices]) if row >= 0 else set()


def test_filters_come_before_the_cut_so_k_items_come_back(plain):
    where = {"genre": ["Documentary"], "available": True}
    qualify = set(plain.item_ids[plain.attributes.matches(where)])
    for user in ("1", "7", "someone-new"):
        answer = plain.recommend(user, 5, filters=Filters.of({"where": where}))
        items = [i["item_id"] for i in answer["items"]]
        assert len(items) == min(5, len(qualify - _seen(plain, user))) > 0
        assert set(items) <= qualify
    allow = [str(i) for i in plain.item_ids[:30]]
    answer = plain.recommend("1", 10, filters=Filters.of({"include": allow, "exclude": allow[:5]}))
    got = [i["item_id"] for i in answer["items"]]
    eligible = set(allow[5:]) - _seen(plain, "1")
    assert set(got) <= eligible and len(got) == min(10, len(eligible)) > 0
    with pytest.raises(KeyError):
        plain.recommend("1", 3, filters=Filters.of({"include": ["no-such-item"]}))


def test_rules_block_and_cap_on_every_list(ruled, plain, data):
    horror = ruled.attributes.matches({"genre": ["Horror"]})
    drama = ruled.attributes.matches({"genre": ["Drama"]})
    lists, _, _ = ruled.rank(np.arange(len(ruled.user_ids)), 10)
    assert (lists >= 0).all()  # ten items qualify for everyone: ten come back
    assert not np.isin(lists, np.flatnonzero(horror)).any()
    assert ruled.item_columns(["50"])[0] not in lists
    assert (drama[lists].sum(axis=1) <= 2).all()
    unruled, _, _ = plain.rank(np.arange(len(plain.user_ids)), 10)
    assert (drama[unruled].sum(axis=1) > 2).any()  # the cap changed something
    # the evaluation ranks what would be served
    held = data.frame[data.frame["user"].isin(["1", "2", "3"])].assign(relevant=True)
    result = evaluate_ranking(ruled, held, (10,))
    assert (drama[np.maximum(result.lists, 0)].sum(axis=1) <= 2).all()


def test_capped_top_k_equals_top_k_without_caps_and_pads_when_few_qualify():
    rng = np.random.default_rng(0)
    scores = rng.random((20, 50))
    allowed = rng.random((20, 50)) > 0.3
    assert (capped_top_k(scores, 7, allowed) == top_k(scores, 7, allowed)).all()
    few = np.zeros(50, dtype=bool)
    few[:3] = True
    out = capped_top_k(scores, 5, None, [(few, 1), (~few, 2)])
    assert ((out >= 0).sum(axis=1) == 3).all()  # one of the three, two of the rest
    assert (few[out[out >= 0].reshape(20, 3)].sum(axis=1) == 1).all()
    # the wide list is not enough: items far down the order still fill the list
    lots = np.ones(50, dtype=bool)
    lots[-4:] = False
    deep = capped_top_k(-np.arange(50.0)[None, :], 4, None, [(lots, 0)])
    assert deep.tolist() == [[46, 47, 48, 49]]


def test_rules_survive_save_and_load(ruled, tmp_path):
    ruled.save(tmp_path)
    back = RecommenderModel.load(tmp_path)
    assert back.rules_spec == ruled.rules_spec and back.rules.described == ruled.rules.described
    assert (back.rules.blocked == ruled.rules.blocked).all()
    before, _, _ = ruled.rank(np.arange(40), 10)
    after, _, _ = back.rank(np.arange(40), 10)
    assert (before == after).all()
    assert back.attributes.names() == ruled.attributes.names()


def test_keel_yaml_section_is_checked():
    assert RecommendSection.model_validate({"rules": RULES}).rules.cap[0].at_most == 2
    with pytest.raises(ValueError, match="at_most"):
        RecommendSection.model_validate({"rules": {"cap": [{"where": {"g": 1}, "at_most": -1}]}})
    with pytest.raises(ValueError, match="extra"):
        RecommendSection.model_validate({"rules": {"nver": ["1"]}})


def test_read_filters_from_json_or_a_file(tmp_path):
    assert read_filters(None) is None
    got = read_filters('{"where": {"genre": ["Drama"]}, "exclude": [1]}')
    assert got.where == {"genre": ["Drama"]} and got.exclude == ("1",)
    path = tmp_path / "f.json"
    path.write_text('{"include": ["1", "2"]}')
    assert read_filters(f"@{path}").include == ("1", "2")
    for bad, message in [
        ("{not json", "not JSON"),
        ('["a"]', "an object with include"),
        ('{"genre": ["x"]}', "an object with include"),
        ('{"include": "1"}', "list of item ids"),
        ('{"where": []}', "object of conditions"),
        (f"@{tmp_path / 'missing.json'}", "cannot read"),
    ]:
        with pytest.raises(KeelInputError, match=message):
            read_filters(bad)


def test_item_mask_names_unknown_ids(plain):
    mask, unknown = item_mask(
        Filters.of({"include": ["1", "x"], "exclude": ["y"]}),
        pd.Index(plain.item_ids),
        plain.attributes,
    )
    assert unknown == ["x", "y"] and mask.sum() == 1


def test_the_endpoint_takes_filters_and_refuses_bad_ones(ruled):
    loaded = LoadedRecommender("ml", "1", "champion", ruled, {"task": "recommendation"}, {})
    with TestClient(create_recommender_app(loaded)) as client:
        body = {"user_id": "3", "k": 6, "filters": {"where": {"genre": ["Comedy"]}}}
        answer = client.post("/recommend", json=body)
        assert answer.status_code == 200, answer.text
        items = [i["item_id"] for i in answer.json()["items"]]
        assert len(items) == 6 and all("Comedy" in g for g in _genres(ruled, items))
        assert sum("Drama" in g for g in _genres(ruled, items)) <= 2  # the rule still holds
        bad = client.post("/recommend", json={"user_id": "3", "filters": {"where": {"colour": 1}}})
        assert bad.status_code == 422 and "colour" in bad.text and "genre" in bad.text
        assert "Traceback" not in bad.text
        unknown = client.post("/recommend", json={"user_id": "3", "filters": {"include": ["zz"]}})
        assert unknown.status_code == 422 and "zz" in unknown.text
        wrong = client.post("/recommend", json={"user_id": "3", "filters": {"whre": {}}})
        assert wrong.status_code == 422
        described = client.get("/model").json()
        assert "genre" in described["item_attributes"] and len(described["rules"]) == 3


def test_batch_lists_take_filters_and_rules(ruled, tmp_path):
    loaded = LoadedRecommender(
        "ml", "1", "champion", ruled, {"task": "recommendation", "user_column": "user_id"}, {}
    )
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": ["1", "2", "new"]}).to_csv(users, index=False)
    out = tmp_path / "lists.parquet"
    summary = recommend_file(
        loaded, users, out, k=5, filters=Filters.of({"where": {"available": True}})
    )
    lists = pd.read_parquet(out)
    assert summary["rows"] == 15 and summary["filters"]["where"] == {"available": True}
    available = ruled.attributes.columns["available"][ruled.item_columns(lists["item_id"])]
    assert available.all()
    assert "50" not in set(lists["item_id"])
    with pytest.raises(KeelInputError, match="colour"):
        recommend_file(
            loaded, users, tmp_path / "x.csv", filters=Filters.of({"where": {"colour": 1}})
        )
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(KeelInputError, match="not in the catalogue"):
        recommend_file(loaded, users, tmp_path / "y.csv", filters=Filters.of({"exclude": ["zz"]}))


def test_no_rule_no_change(plain):
    rules = ItemRules.resolve({}, plain.item_ids, ItemAttributes())
    assert not rules.active and rules.described == []
