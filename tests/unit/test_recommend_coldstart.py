"""Cold start from attributes: a new user gets their segment's popularity, said and measured."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from keel.families.recommendation.coldstart import GLOBAL, Segments, segment_key
from keel.families.recommendation.data import prepare_interactions
from keel.families.recommendation.package import LoadedRecommender
from keel.families.recommendation.rules import Catalogue
from keel.families.recommendation.serve import create_recommender_app
from keel.families.recommendation.task import RecommenderModel, evaluate_ranking
from keel.families.recommendation.train import fit_model
from tests.unit.test_recommendation import config


def test_segment_popularity_counts_the_segments_users():
    matrix = sp.csr_matrix(
        np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=np.float32)
    )
    users = np.array(["a", "b", "c", "d", "e"])
    table = pd.DataFrame(
        {"band": ["young", "young", "old", "old", "young"], "city": ["x"] * 5},
        index=pd.Index(["a", "b", "c", "d", "e"]),
    )
    table.loc["new"] = ["old", "x"]  # in the table, never in training
    segments = Segments.fit(matrix, users, table, ["band"], min_users=2)
    young = list(segments.keys).index("band=young")
    old = list(segments.keys).index("band=old")
    assert segments.popularity[young].tolist() == [3, 1, 0]
    assert segments.popularity[old].tolist() == [0, 1, 2]
    assert segments.of_users(["new"]).tolist() == [old]
    assert segments.of_users(["nobody"]).tolist() == [-1]
    assert segments.of_users(["nobody"], [{"band": "young"}]).tolist() == [young]
    assert segments.of_users(["nobody"], [{"band": "unheard-of"}]).tolist() == [-1]
    assert segments.name(-1) == GLOBAL
    # a segment smaller than min_users is not kept: its users get the global list
    few = Segments.fit(matrix, users, table, ["band"], min_users=3)
    assert list(few.keys) == ["band=young"]
    assert Segments.fit(matrix, users, None, ["band"], 1).active is False
    assert segment_key({"band": "old", "city": None}, ["band", "city"]) is None


@pytest.fixture(scope="module")
def data(movielens):
    ratings, users, items = movielens
    return prepare_interactions(ratings[ratings["user_id"] <= 300], config(), users, items)


@pytest.fixture(scope="module")
def segmented(data) -> RecommenderModel:
    early = data.frame[data.frame["user"].astype(int) <= 200]
    catalogue = Catalogue(data.items, "|", {}, data.users, ("gender", "occupation"), 3)
    return fit_model("item_knn", {"neighbours": 30}, early, 0, catalogue)


def test_a_new_user_gets_their_segments_list_and_the_answer_says_so(segmented, data):
    answer = segmented.recommend("250", 10)  # in the users table, not in training
    assert answer["cold_start"] and answer["segment"].startswith("gender=")
    row = segmented.segments.of_users(["250"])[0]
    expected = np.argsort(-segmented.segments.popularity[row], kind="stable")[:10]
    assert [i["item_id"] for i in answer["items"]] == list(segmented.item_ids[expected])
    stranger = segmented.recommend("someone", 10)
    assert stranger["segment"] == GLOBAL
    told = segmented.recommend("someone", 10, user_attributes=data.users.loc["250"].to_dict())
    assert told["segment"] == answer["segment"] and told["items"] == answer["items"]
    warm = segmented.recommend("1", 10)
    assert not warm["cold_start"] and "segment" not in warm


def test_segments_survive_save_load_and_reach_the_endpoint(segmented, tmp_path):
    segmented.save(tmp_path)
    back = RecommenderModel.load(tmp_path)
    assert back.recommend("250", 10) == segmented.recommend("250", 10)
    loaded = LoadedRecommender("ml", "1", None, back, {"task": "recommendation"}, {})
    with TestClient(create_recommender_app(loaded)) as client:
        body = {
            "user_id": "brand-new",
            "k": 5,
            "user_attributes": {"gender": "F", "occupation": "student"},
        }
        answer = client.post("/recommend", json=body).json()
        assert answer["cold_start"] and answer["segment"] == "gender=F|occupation=student"
        bad = client.post("/recommend", json={"user_id": "x", "user_attributes": {"a": [1]}})
        assert bad.status_code == 422


def test_the_evaluation_measures_the_gain_over_global_popularity(segmented, data):
    later = data.frame[data.frame["user"].astype(int) > 200]
    result = evaluate_ranking(segmented, later, (10,))
    plain = evaluate_ranking(segmented, later, (10,), segments=False)
    assert result.cold.all()  # every user of the later 100 is new to the model
    assert result.means()["ndcg_at_10"] != plain.means()["ndcg_at_10"]
