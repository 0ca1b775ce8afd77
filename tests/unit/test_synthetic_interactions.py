"""The scale generator: seeded, the promised shape, and a log a recommender can learn from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.families.recommendation.synthetic import (
    ML20M_INTERACTIONS,
    ML20M_USERS,
    generate_interactions,
    ml20m_shape,
)


@pytest.fixture(scope="module")
def world():
    return generate_interactions(users=4000, items=3000, interactions=80_000, seed=7)


def test_same_seed_same_frames_other_seed_other_frames(world):
    again = generate_interactions(users=4000, items=3000, interactions=80_000, seed=7)
    pd.testing.assert_frame_equal(world.interactions, again.interactions)
    pd.testing.assert_frame_equal(world.items, again.items)
    other = generate_interactions(users=4000, items=3000, interactions=80_000, seed=8)
    assert not world.interactions["item_id"].equals(other.interactions["item_id"])


def test_shape_columns_and_no_repeated_pair(world):
    frame = world.interactions
    assert list(frame.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert not frame.duplicated(["user_id", "item_id"]).any()
    # a user draws an item once; repeats are drawn again, so nearly every draw lands
    assert 0.9 * 80_000 <= len(frame) <= 80_000 * 1.01
    assert frame["timestamp"].is_monotonic_increasing
    assert set(frame["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert frame["user_id"].between(1, 4000).all() and frame["item_id"].between(1, 3000).all()
    assert set(world.users.columns) == {"user_id", "segment", "age_band"}
    assert set(world.items.columns) == {"item_id", "genre", "available"}
    assert world.shape["interactions"] == len(frame)


def test_popularity_is_long_tailed_and_activity_is_skewed(world):
    frame = world.interactions
    per_item = frame["item_id"].value_counts().to_numpy()
    head = per_item[: len(per_item) // 10].sum() / per_item.sum()
    assert head > 0.3  # the top tenth of items takes far more than a tenth
    per_user = frame["user_id"].value_counts()
    assert per_user.max() > 10 * per_user.median()


def test_popularity_drifts_so_a_time_split_matters(world):
    frame = world.interactions
    cut = frame["timestamp"].quantile(0.9)
    early = frame[frame["timestamp"] < cut]["item_id"].value_counts().head(20).index
    late = frame[frame["timestamp"] >= cut]["item_id"].value_counts().head(20).index
    assert len(set(early) & set(late)) < 15  # the hits of the last tenth are not the old ones
    first_seen = frame.groupby("item_id")["timestamp"].min()
    assert (first_seen > frame["timestamp"].quantile(0.5)).sum() > 50  # items keep appearing


def test_tastes_exist_users_favour_their_segment(world):
    frame = world.interactions.merge(world.users, on="user_id").merge(world.items, on="item_id")
    share = float((frame["segment"] == frame["genre"]).mean())
    assert share > 0.4  # 20 genres: without tastes this would be about 0.05
    liked = frame[frame["segment"] == frame["genre"]]["rating"].mean()
    assert liked > frame[frame["segment"] != frame["genre"]]["rating"].mean() + 0.5


def test_ml20m_shape_and_bad_arguments():
    full = ml20m_shape(1.0)
    assert full["users"] == ML20M_USERS and full["interactions"] == ML20M_INTERACTIONS
    tenth = ml20m_shape(0.1)
    assert tenth["interactions"] == round(ML20M_INTERACTIONS / 10)
    assert full["items"] > tenth["items"] > full["items"] / 10  # catalogues grow slower
    with pytest.raises(ValueError, match="scale"):
        ml20m_shape(0)
    with pytest.raises(ValueError, match="taste"):
        generate_interactions(10, 10, 100, taste=2.0)
    with pytest.raises(ValueError, match="at least 1"):
        generate_interactions(0, 10, 100)


def test_a_tiny_world_still_works():
    tiny = generate_interactions(users=5, items=3, interactions=10, seed=1)
    assert 1 <= len(tiny.interactions) <= 10
    assert np.isin(tiny.interactions["item_id"], [1, 2, 3]).all()
