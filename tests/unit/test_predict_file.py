"""Batch inference: the same answer as /predict row by row, rejects named, chunks, bad input."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_diabetes

from keel.data import infer_schema, prepare_labels, records_to_frame
from keel.errors import DataError, KeelInputError
from keel.families.tabular.batch import Source, predict_file
from keel.families.tabular.training import make_pipeline
from keel.registry import LoadedPackage
from keel.serving import create_app
from tests.unit.test_serving import package  # noqa: F401 (a fixture)

ROWS = 400


@pytest.fixture(scope="module")
def thresholded(package):  # noqa: F811
    meta = {"positive_class": ">50K", "decision_threshold": 0.3}
    return dataclasses.replace(package, metadata=meta)


@pytest.fixture(scope="module")
def table(adult_frame: pd.DataFrame) -> pd.DataFrame:
    frame = adult_frame.drop(columns=["income"]).head(ROWS).reset_index(drop=True)
    frame = frame.astype({"age": object})
    frame.loc[3, "age"] = "old"  # not a number
    frame.loc[7, "age"] = 30.5  # not whole
    frame.loc[11, "age"] = 1000  # out of range
    frame.loc[13, "age"] = None  # required
    frame.loc[17, "workclass"] = "Astronaut"  # unseen category: accepted, as serving does
    return frame


def test_every_row_is_answered_as_predict_answers_it(thresholded, table, tmp_path):
    source = tmp_path / "people.csv"
    table.to_csv(source, index=False)
    out = tmp_path / "scores.parquet"
    seen = []
    summary = predict_file(
        thresholded, Source(str(source)), out, chunk=64, progress=lambda n, t: seen.append(n)
    )
    assert summary["rows"] == ROWS and summary["rejected"] == 4 and summary["scored"] == ROWS - 4
    assert seen[-1] == ROWS and len(seen) == -(-ROWS // 64)  # one call per chunk
    assert summary["decision_threshold"] == 0.3
    scores = pd.read_parquet(out)
    assert list(scores.columns[:2]) == ["row", "prediction"]
    rejects = pd.read_csv(summary["rejects"])
    assert rejects["row"].tolist() == [4, 8, 12, 14]  # 1-based data rows
    records = json.loads(table.to_json(orient="records"))
    for row, problems in zip(rejects["row"], rejects["problems"], strict=True):
        # the same rule, in the same words, as a request with that row would get
        _, errors = records_to_frame([records[row - 1]], thresholded.schema, unseen="accept")
        assert problems == "; ".join(f"{e.field}: {e.message}" for e in errors), problems
    client = TestClient(create_app(thresholded))
    by_row = scores.set_index("row")
    for start in range(0, ROWS, 50):
        batch = [
            (i + 1, r)
            for i, r in enumerate(records[start : start + 50], start)
            if i + 1 in by_row.index
        ]
        answer = client.post("/predict", json={"instances": [r for _, r in batch]}).json()
        for (row, _), prediction, proba in zip(
            batch, answer["predictions"], answer["probabilities"], strict=True
        ):
            assert by_row.loc[row, "prediction"] == prediction
            assert by_row.loc[row, "probability_>50K"] == pytest.approx(proba[">50K"], abs=2e-6)
    # the threshold of the package (0.3), not argmax: more rows are positive
    positive = (scores["prediction"] == ">50K").sum()
    assert (
        positive
        == (scores["probability_>50K"] >= 0.3).sum()
        > (scores["probability_>50K"] >= 0.5).sum()
    )


def test_parquet_json_lines_and_sql_give_the_same_scores(package, table, tmp_path):  # noqa: F811
    clean = table.drop(index=[3, 7, 11, 13]).reset_index(drop=True)
    clean["age"] = clean["age"].astype(int)
    csv, parquet, lines = tmp_path / "a.csv", tmp_path / "a.parquet", tmp_path / "a.jsonl"
    clean.to_csv(csv, index=False)
    clean.to_parquet(parquet)
    clean.to_json(lines, orient="records", lines=True)
    with sqlite3.connect(tmp_path / "a.db") as conn:
        clean.to_sql("people", conn, index=False)
    results = []
    for name, source in (
        ("csv", Source(str(csv))),
        ("parquet", Source(str(parquet))),
        ("jsonl", Source(str(lines))),
        ("sql", Source(f"sqlite:///{tmp_path / 'a.db'}", "SELECT * FROM people")),
    ):
        out = tmp_path / f"{name}.csv"
        summary = predict_file(package, source, out, chunk=100)
        assert summary["rejected"] == 0 and summary["rejects"] is None, name
        results.append(pd.read_csv(out))
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0], other)
    assert summary["input"].startswith("sqlite:///") and summary["query"]


def test_a_regression_model_writes_values(tmp_path):
    data = load_diabetes(as_frame=True).frame
    frame, _ = prepare_labels(data, "target", None, None)
    schema = infer_schema(frame, "target", [])
    model = make_pipeline("lightgbm", "regression", schema, 0)
    model.fit(frame[schema.feature_names], frame["target"])
    loaded = LoadedPackage(
        name="diabetes",
        version="1",
        alias="champion",
        model=model,
        schema=schema,
        task="regression",
        classes=(),
        metadata={},
    )
    source = tmp_path / "d.csv"
    data.drop(columns=["target"]).to_csv(source, index=False)
    summary = predict_file(loaded, Source(str(source)), tmp_path / "d.parquet")
    scores = pd.read_parquet(tmp_path / "d.parquet")
    assert summary["scored"] == len(data) and scores["prediction"].dtype == np.float64
    expected = model.predict(frame[schema.feature_names])
    np.testing.assert_allclose(scores["prediction"], expected, rtol=1e-9)


def test_bad_input_is_refused_before_anything_is_written(package, table, tmp_path):  # noqa: F811
    source = tmp_path / "people.csv"
    table.to_csv(source, index=False)
    out = tmp_path / "scores.csv"
    out.write_text("keep me")
    with pytest.raises(KeelInputError, match="exists"):
        predict_file(package, Source(str(source)), out)
    assert out.read_text() == "keep me"
    table.drop(columns=["age"]).to_csv(tmp_path / "no_age.csv", index=False)
    cases = [
        (Source(str(tmp_path / "no_age.csv")), "no column 'age'"),
        (Source(str(tmp_path / "missing.csv")), "no such file"),
        (Source(str(tmp_path / "people.txt")), r"read \.csv"),
        (Source(str(source), "SELECT 1"), "--query goes with a database URL"),
        (Source(f"sqlite:///{tmp_path / 'none.db'}", "SELECT 1"), "no SQLite database"),
        (Source(f"sqlite:///{tmp_path / 'x.db'}"), "needs --query"),
    ]
    (tmp_path / "people.txt").write_text("a")
    sqlite3.connect(tmp_path / "x.db").close()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases.append((Source(str(empty)), "empty"))
    header = tmp_path / "header.csv"
    header.write_text(",".join(table.columns) + "\n")
    cases.append((Source(str(header)), "no rows"))
    for source_, message in cases:
        target = tmp_path / "new.parquet"
        with pytest.raises((KeelInputError, DataError), match=message):
            predict_file(package, source_, target)
        assert not target.exists(), message
    with sqlite3.connect(tmp_path / "x.db") as conn:
        conn.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(DataError, match="query failed"):
        predict_file(
            package,
            Source(f"sqlite:///{tmp_path / 'x.db'}", "SELECT * FROM nope"),
            tmp_path / "q.csv",
        )
    assert not list(tmp_path.glob("*.tmp"))
    for bad_out, message in ((tmp_path / "s.txt", "write .parquet or .csv"),):
        with pytest.raises(KeelInputError, match=message):
            predict_file(package, Source(str(source)), bad_out)
    with pytest.raises(KeelInputError, match=r"reject file is a \.csv"):
        predict_file(package, Source(str(source)), tmp_path / "o.csv", tmp_path / "r.parquet")
