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
from tests.integration.test_ray_drift import ray_cluster  # noqa: F401 (a fixture)

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


def test_on_a_ray_cluster_the_output_is_the_same(
    project: Path,
    adult_frame: pd.DataFrame,
    ray_cluster: str,  # noqa: F811
) -> None:
    people = adult_frame.drop(columns=["income"]).head(900).reset_index(drop=True)
    people.loc[[3, 500], "hours-per-week"] = -1  # rejected, in two different chunks
    people.to_csv(project / "many.csv", index=False)
    local = keel_in(
        project, "predict", "income", "many.csv", "local.parquet", "--chunk", "200", "--json"
    )
    remote = keel_in(
        project,
        "predict",
        "income",
        "many.csv",
        "ray.parquet",
        "--chunk",
        "200",
        "--ray-address",
        ray_cluster,
        "--json",
    )
    assert local.exit_code == remote.exit_code == 0, remote.output
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert b["ray_address"] == ray_cluster and a["rejected"] == b["rejected"] == 2
    pd.testing.assert_frame_equal(
        pd.read_parquet(project / "local.parquet"), pd.read_parquet(project / "ray.parquet")
    )
    assert pd.read_csv(b["rejects"])["row"].tolist() == [4, 501]
    nowhere = keel_in(
        project, "predict", "income", "many.csv", "x.parquet", "--ray-address", "127.0.0.1:1"
    )
    assert nowhere.exit_code == 2 and "cannot reach the Ray cluster" in nowhere.output
    assert not (project / "x.parquet").exists()
