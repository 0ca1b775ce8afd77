"""Profiles: one pass, mergeable across chunks, faithful to the data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.data import Profile, infer_schema


def _chunks(frame: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    return [frame.iloc[idx] for idx in np.array_split(np.arange(len(frame)), n)]


@pytest.fixture(scope="module")
def schema(adult_frame: pd.DataFrame):
    return infer_schema(adult_frame, "income")


def test_profile_matches_pandas(adult_frame: pd.DataFrame, schema) -> None:
    profile = Profile.from_frame(adult_frame, schema)
    assert profile.rows == len(adult_frame)
    age = profile.columns["age"]
    assert age.count == adult_frame["age"].count() and age.missing == 0
    assert age.mean == pytest.approx(adult_frame["age"].mean())
    assert age.std == pytest.approx(adult_frame["age"].std())
    assert age.minimum == adult_frame["age"].min() and age.maximum == adult_frame["age"].max()
    assert sum(age.bins) == age.count
    width = (age.maximum - age.minimum) / 50
    for q in (0.05, 0.5, 0.95):
        assert abs(age.quantile(q) - adult_frame["age"].quantile(q)) <= width + 1e-9
    work = profile.columns["workclass"]
    assert work.missing == int(adult_frame["workclass"].isna().sum())
    top_value, top_count, top_share = work.top(1)[0]
    expected = adult_frame["workclass"].value_counts()
    assert (top_value, top_count) == (expected.index[0], int(expected.iloc[0]))
    assert top_share == pytest.approx(expected.iloc[0] / expected.sum())


def test_chunks_merge_to_the_whole(adult_frame: pd.DataFrame, schema) -> None:
    whole = Profile.from_frame(adult_frame, schema).to_dict()
    parts = [Profile.from_frame(chunk, schema) for chunk in _chunks(adult_frame, 7)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    merged_dict = merged.to_dict()
    assert merged_dict["rows"] == whole["rows"]
    for name, stats in whole["columns"].items():
        other = merged_dict["columns"][name]
        for key in ("count", "missing", "min", "max", "bins", "counts"):
            assert other.get(key) == stats.get(key), (name, key)
        if stats["type"] == "numeric":
            assert other["mean"] == pytest.approx(stats["mean"])
            assert other["std"] == pytest.approx(stats["std"])
    streamed = Profile.empty(schema)
    for chunk in _chunks(adult_frame, 5):
        streamed.update(chunk)
    assert streamed.to_dict()["columns"]["age"]["bins"] == whole["columns"]["age"]["bins"]


def test_out_of_range_values_land_in_under_and_overflow(adult_frame, schema) -> None:
    reference = Profile.from_frame(adult_frame, schema)
    batch = Profile.empty(schema)
    batch.update(pd.DataFrame({"age": [-5, 500, adult_frame["age"].max()]}))
    bins = batch.columns["age"].bins
    assert bins[0] == 1 and bins[-1] == 1 and bins[-2] == 1
    assert batch.columns["age"].edges == reference.columns["age"].edges


def test_json_round_trip(adult_frame, schema) -> None:
    profile = Profile.from_frame(adult_frame, schema)
    text = json.dumps(profile.to_dict())
    again = Profile.from_dict(json.loads(text))
    assert again.to_dict() == profile.to_dict()


def test_merge_refuses_different_shapes(adult_frame, schema) -> None:
    a = Profile.from_frame(adult_frame, schema)
    other = Profile.from_frame(
        adult_frame[["age", "income"]], infer_schema(adult_frame[["age", "income"]], "income")
    )
    with pytest.raises(ValueError, match="different columns"):
        a.merge(other)


def test_category_cap_keeps_counts_honest() -> None:
    frame = pd.DataFrame({"code": [f"v{i % 1500}" for i in range(3000)], "y": ["a", "b"] * 1500})
    schema = infer_schema(frame, "y")
    stats = Profile.from_frame(frame, schema).columns["code"]
    assert len(stats.counts) == 1001 and stats.counts["(other)"] == 1000
    assert sum(stats.counts.values()) == stats.count == 3000
