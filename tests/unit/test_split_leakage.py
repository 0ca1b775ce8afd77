"""Leak-free splits and the checks that stop a run before a leaky model is trained."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from keel.data import (
    check_duplicates,
    check_single_feature_leakage,
    class_balance,
    duplicates_across,
    infer_schema,
    prepare_labels,
    single_feature_scores,
    split_frame,
)
from keel.errors import DataError


@pytest.fixture(scope="module")
def adult(adult_frame: pd.DataFrame) -> pd.DataFrame:
    frame, _ = prepare_labels(adult_frame, "income", None, None)
    return frame.drop(columns=["fnlwgt"])


def test_identical_rows_never_straddle_splits(adult: pd.DataFrame) -> None:
    repeated = pd.concat([adult, adult.head(300)], ignore_index=True)
    columns = list(repeated.columns)
    splits = split_frame(repeated, "income", "binary", seed=1, key_columns=columns)
    assert duplicates_across(splits, columns) == {"validation": 0, "test": 0}
    assert splits.details["repeated_rows_kept_together"] >= 300
    assert sum(splits.sizes().values()) == len(repeated)
    check_duplicates(splits, columns)  # does not raise


def test_time_split_puts_test_strictly_after_train(adult: pd.DataFrame) -> None:
    frame = adult.assign(day=pd.date_range("2020-01-01", periods=len(adult), freq="h").floor("D"))
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame["day"] = frame["day"].dt.strftime("%Y-%m-%d")
    splits = split_frame(frame, "income", "binary", 0.2, 0.2, time_column="day")
    assert splits.method == "time"
    assert splits.train["day"].max() < splits.validation["day"].min()
    assert splits.validation["day"].max() < splits.test["day"].min()
    assert splits.details["test_from"].startswith(splits.test["day"].min())


def test_time_split_errors(adult: pd.DataFrame) -> None:
    bad = adult.assign(day="2020-01-01")
    bad.loc[7, "day"] = "someday"
    with pytest.raises(DataError, match=r"not dates or numbers \(first at row 8: 'someday'\)"):
        split_frame(bad, "income", "binary", time_column="day")
    same = adult.assign(day="2020-01-01")
    with pytest.raises(DataError, match="too few distinct times"):
        split_frame(same, "income", "binary", time_column="day")


def test_group_split_keeps_groups_whole(adult: pd.DataFrame) -> None:
    frame = adult.assign(household=np.arange(len(adult)) // 4)
    splits = split_frame(frame, "income", "binary", seed=3, group_column="household")
    groups = [set(p["household"]) for p in (splits.train, splits.validation, splits.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert splits.method == "group" and splits.details["groups"] == len(adult) // 4
    with pytest.raises(DataError, match="at least 3 are needed"):
        split_frame(adult.assign(g=np.arange(len(adult)) % 2), "income", "binary", group_column="g")


def test_duplicates_across_a_time_split_stop_the_run(adult: pd.DataFrame) -> None:
    early = adult.head(600).assign(t=0)
    middle = adult.iloc[600:900].assign(t=1)
    late = adult.head(300).assign(t=2)  # the same people again, later
    frame = pd.concat([early, middle, late], ignore_index=True)
    splits = split_frame(frame, "income", "binary", 0.25, 0.25, time_column="t")
    with pytest.raises(DataError, match="identical to training rows"):
        check_duplicates(splits, [c for c in frame.columns if c != "t"])


def test_a_copy_of_the_target_is_caught_and_named(adult: pd.DataFrame) -> None:
    frame = adult.assign(outcome_code=(adult["income"] == ">50K").astype(int))
    schema = infer_schema(frame, "income")
    splits = split_frame(frame, "income", "binary", seed=0)
    scores = single_feature_scores(splits, schema, "binary", ">50K")
    assert scores[0].feature == "outcome_code" and scores[0].score > 0.99
    with pytest.raises(DataError, match="feature 'outcome_code' alone predicts target 'income'"):
        check_single_feature_leakage(scores, "income")
    honest = [s for s in scores if s.feature != "outcome_code"]
    check_single_feature_leakage(honest, "income")  # real Adult features are far from perfect
    assert honest[0].score < 0.9


def test_categorical_leak_multiclass_and_regression() -> None:
    rng = np.random.default_rng(0)
    n = 300
    y = rng.choice(["a", "b", "c"], n)
    frame = pd.DataFrame({"noise": rng.normal(size=n), "label_copy": [f"L{v}" for v in y], "y": y})
    schema = infer_schema(frame, "y")
    splits = split_frame(frame, "y", "multiclass", seed=0)
    scores = single_feature_scores(splits, schema, "multiclass", None)
    assert scores[0].feature == "label_copy" and scores[0].metric == "balanced_accuracy"
    assert scores[0].score == 1.0
    values = rng.normal(size=n)
    reg = pd.DataFrame({"x": values, "doubled": values * 2, "noise": rng.normal(size=n)})
    reg["y"] = values
    schema = infer_schema(reg, "y")
    splits = split_frame(reg, "y", "regression", seed=0)
    best = single_feature_scores(splits, schema, "regression", None)[0]
    assert best.metric == "r2" and best.score > 0.95 and best.feature in {"x", "doubled"}


def test_class_balance(adult: pd.DataFrame) -> None:
    shares = class_balance(adult["income"])
    assert list(shares) == ["<=50K", ">50K"] and sum(shares.values()) == pytest.approx(1.0)


def _assignment(splits, frame: pd.DataFrame) -> pd.Series:
    """Split name per row, keyed by a row id column."""
    return pd.concat(
        [
            part.set_index("row_id").assign(split=name)["split"]
            for name, part in (
                ("train", splits.train),
                ("validation", splits.validation),
                ("test", splits.test),
            )
        ]
    ).reindex(frame["row_id"])


def test_rows_keep_their_split_when_columns_or_rows_change(adult: pd.DataFrame) -> None:
    frame = adult.assign(row_id=np.arange(len(adult)))
    features = [c for c in adult.columns if c != "income"]
    before = split_frame(frame, "income", "binary", seed=3, key_columns=[*features, "income"])
    fewer = [c for c in features if c not in ("capital-gain", "capital-loss")]
    after = split_frame(frame, "income", "binary", seed=3, key_columns=[*fewer, "income"])
    same = (_assignment(before, frame) == _assignment(after, frame)).mean()
    assert same > 0.97, same
    # new rows appended (a retraining on more data): old rows mostly stay put
    grown = pd.concat([frame, frame.sample(300, random_state=0).assign(age=lambda f: f.age + 1000)])
    grown = grown.assign(row_id=np.arange(len(grown)))
    later = split_frame(grown, "income", "binary", seed=3, key_columns=[*features, "income"])
    old = _assignment(later, grown).iloc[: len(frame)].to_numpy()
    assert (old == _assignment(before, frame).to_numpy()).mean() > 0.95
    # another seed is another split
    other = split_frame(frame, "income", "binary", seed=4, key_columns=[*features, "income"])
    assert (_assignment(other, frame) == _assignment(before, frame)).mean() < 0.8


def test_stable_split_is_stratified_and_sized(adult: pd.DataFrame) -> None:
    splits = split_frame(adult, "income", "binary", seed=0, test=0.25, validation=0.15)
    sizes = splits.sizes()
    assert abs(sizes["test"] / len(adult) - 0.25) < 0.02
    assert abs(sizes["validation"] / len(adult) - 0.15) < 0.02
    overall = (adult["income"] == ">50K").mean()
    for part in (splits.train, splits.validation, splits.test):
        assert abs((part["income"] == ">50K").mean() - overall) < 0.02


def test_training_rows_document_answers_which_rows_a_model_saw(adult: pd.DataFrame) -> None:
    from keel.data import encode_row_keys, rows_seen

    columns = list(adult.columns)
    doc = encode_row_keys([adult.head(500), adult.iloc[500:800]], columns)
    assert doc["rows"] <= 800 and doc["columns"] == columns
    seen = rows_seen(json.loads(json.dumps(doc)), adult)
    assert seen[:800].all()
    # later rows are seen only when they repeat an earlier one exactly
    repeats = adult.iloc[800:].merge(adult.head(800).drop_duplicates(), how="left", indicator=True)
    assert seen[800:].sum() == (repeats["_merge"] == "both").sum()
    assert rows_seen(doc, adult.drop(columns=["age"])) is None  # can't tell: column gone
