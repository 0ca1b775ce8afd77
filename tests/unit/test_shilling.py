"""The shilling test: fake users pushing one item move its exposure, more with more fakes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keel.families.recommendation.data import ITEM, TIME, USER
from keel.families.recommendation.models import DEFAULT_RECOMMENDER_PARAMS
from keel.families.recommendation.train import fit_model, shilling_attack


def _interactions(users: int = 300, items: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    weights = np.arange(items, 0, -1) / np.arange(items, 0, -1).sum()  # a long tail
    rows = []
    for u in range(users):
        for i in rng.choice(items, size=rng.integers(5, 20), replace=False, p=weights):
            rows.append({USER: f"u{u}", ITEM: f"i{i}", TIME: float(rng.integers(0, 1000))})
    return pd.DataFrame(rows)


def test_more_fake_users_push_the_item_further_and_the_fakes_are_counted() -> None:
    frame = _interactions()
    params = dict(DEFAULT_RECOMMENDER_PARAMS["item_knn"])
    model = fit_model("item_knn", params, frame, 0)
    small = shilling_attack("item_knn", params, frame, model, 0.01, 10, 0)
    large = shilling_attack("item_knn", params, frame, model, 0.1, 10, 0)
    assert small["fake_users"] == 3 and large["fake_users"] == 30
    assert small["target_item"] == large["target_item"]  # the median-popularity item
    assert small["exposure_before"] == large["exposure_before"]
    assert large["gain"] > 0.1 > small["gain"]
    assert large["gain"] == large["exposure_after"] - large["exposure_before"]
