"""`keel predict` against a registered model and a real `keel serve`: the same answer as
/predict for every row, rejects named, lineage on the version, nothing overwritten."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pandas as pd
import pytest

from keel.registry import batch_runs, mlflow_scope
from tests.conftest import keel_in, start_server, train_project

pytestmark = pytest.mark.integration
ROWS = 600


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("batch")
    train_project(root, adult_frame)
    return root


def test_batch_answers_equal_the_server_row_by_row(project: Path, adult_frame: pd.DataFrame):
    people = adult_frame.drop(columns=["income"]).tail(ROWS).reset_index(drop=True)
    people.loc[9, "hours-per-week"] = -3
    written = people.astype({"age": str})  # numbers as text, as exports often have them
    written.loc[5, "age"] = "forty"
    written.to_parquet(project / "people.parquet")
    out = project / "scores.csv"
    done = keel_in(
        project,
        "predict",
        "income@champion",
        "people.parquet",
        str(out),
        "--chunk",
        "128",
        "--json",
    )
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["rows"] == ROWS and summary["rejected"] == 2
    assert {p["rule"].split(":")[0] for p in summary["problems"]} == {"age", "hours-per-week"}
    rejects = pd.read_csv(summary["rejects"])
    assert rejects["row"].tolist() == [6, 10]
    scores = pd.read_csv(out).set_index("row")
    records = json.loads(people.to_json(orient="records"))
    process, url = start_server(project)
    try:
        with httpx.Client(timeout=60) as client:
            for start in range(0, ROWS, 100):
                batch = [
                    (i + 1, r)
                    for i, r in enumerate(records[start : start + 100], start)
                    if i + 1 in scores.index
                ]
                answer = client.post(f"{url}/predict", json={"instances": [r for _, r in batch]})
                assert answer.status_code == 200, answer.text
                body = answer.json()
                for (row, _), prediction, proba in zip(
                    batch, body["predictions"], body["probabilities"], strict=True
                ):
                    assert scores.loc[row, "prediction"] == prediction
                    for label, value in proba.items():
                        assert scores.loc[row, f"probability_{label}"] == pytest.approx(
                            value, abs=2e-6
                        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    tracking = f"sqlite:///{project / '.keel' / 'mlflow.db'}"
    with mlflow_scope(tracking) as client:
        version = client.get_model_version_by_alias("income", "champion")
        runs = batch_runs(dict(version.tags))
    assert runs[-1]["input_digest"] == summary["input_digest"] and runs[-1]["rows"] == ROWS
    again = keel_in(project, "predict", "income@champion", "people.parquet", str(out))
    assert again.exit_code == 2 and "exists" in again.output and "Traceback" not in again.output
    assert pd.read_csv(out).shape[0] == ROWS - 2  # untouched
    people.drop(columns=["age"]).to_csv(project / "no_age.csv", index=False)
    missing = keel_in(project, "predict", "income", "no_age.csv", str(project / "x.parquet"))
    assert missing.exit_code == 2 and "no column 'age'" in missing.output
    assert not (project / "x.parquet").exists()
    unknown = keel_in(project, "predict", "nope@champion", "people.parquet", "y.csv")
    assert unknown.exit_code == 2 and "nope" in unknown.output
