"""Keel's Ray paths on one real Ray cluster (2 worker CPUs) started on loopback:
`keel drift --ray-address`, tuning folds (`keel run --ray-address`) and `keel predict
--ray-address` each give what they give in process.

One module on purpose: `ray stop --force` stops every Ray process of the machine, so two
modules with a cluster each, run by two test workers at once, would stop each other's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from keel._ray import connected
from keel.cli import app
from keel.data import infer_schema, prepare_labels
from keel.families.tabular.training import RayFolds, tune
from tests.conftest import SMALL_PROJECT, free_port, keel_in, ray_head, train_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_cluster():
    with ray_head(cpus=2) as address:
        yield address


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("ray-batch")
    train_project(root, adult_frame)
    return root


def test_drift_on_ray_equals_drift_in_process(
    tmp_path: Path, adult_frame: pd.DataFrame, ray_cluster: str
) -> None:
    frame = adult_frame.drop(columns=["income"])
    frame.iloc[:1200].to_parquet(tmp_path / "ref.parquet")
    frame.iloc[1200:].assign(age=lambda f: f.age + 6).to_csv(tmp_path / "cur.csv", index=False)
    args = ["drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.csv"), "--json"]
    local = CliRunner().invoke(app, args)
    on_ray = CliRunner().invoke(app, [*args, "--chunk-rows", "1000", "--ray-address", ray_cluster])
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    a, b = json.loads(local.stdout), json.loads(on_ray.stdout)
    assert a["drifted_columns"] == b["drifted_columns"] and "age" in b["drifted_columns"]
    for x, y in zip(a["columns"], b["columns"], strict=True):
        assert x["column"] == y["column"]
        assert x["p_value"] == pytest.approx(y["p_value"], rel=1e-9, abs=1e-300)


def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    adult_frame.to_csv(tmp_path / "a.csv", index=False)
    done = CliRunner().invoke(
        app,
        [
            "drift",
            str(tmp_path / "a.csv"),
            str(tmp_path / "a.csv"),
            "--ray-address",
            f"127.0.0.1:{free_port()}",
        ],
    )
    assert done.exit_code == 2, done.output
    assert "Ray cluster" in done.output and "Traceback" not in done.output


def test_trials_on_ray_equal_trials_in_process(ray_cluster: str, adult_frame: pd.DataFrame):
    frame, labels = prepare_labels(adult_frame.head(1500), "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    args = ("lightgbm", frame, schema, labels, 7, 0.0, 3)
    local = tune(*args, trials=6)
    with connected(ray_cluster) as ray:
        remote = tune(*args, trials=6, folds_on=RayFolds(ray))
    assert remote.best_params == local.best_params
    assert remote.best_score == pytest.approx(local.best_score, rel=1e-12)
    assert [t.params for t in remote.trials] == [t.params for t in local.trials]
    assert [t.state for t in remote.trials] == [t.state for t in local.trials]
    for a, b in zip(local.trials, remote.trials, strict=True):
        assert b.fold_scores == pytest.approx(a.fold_scores, rel=1e-12)


def test_keel_run_on_ray_registers_the_same_model(
    ray_cluster: str, tmp_path: Path, adult_frame: pd.DataFrame
):
    results = []
    for name, extra in (("local", []), ("ray", ["--ray-address", ray_cluster])):
        root = tmp_path / name
        root.mkdir()
        adult_frame.to_csv(root / "adult.csv", index=False)
        config = {**SMALL_PROJECT, "trials": 4, "budget": 60}
        (root / "keel.yaml").write_text(json.dumps(config))
        done = keel_in(root, "run", "--json", *extra)
        assert done.exit_code == 0, done.output
        results.append(json.loads(done.stdout))
    local, remote = results
    assert remote["metrics"] == pytest.approx(local["metrics"], rel=1e-9)
    assert remote["tuning"]["lightgbm"]["best_params"] == local["tuning"]["lightgbm"]["best_params"]
    assert remote["model"]["candidate"] == local["model"]["candidate"]
    bad = keel_in(tmp_path / "ray", "run", "--no-cache", "--ray-address", "nowhere")
    assert bad.exit_code == 2 and "HOST:PORT" in bad.output


def test_on_a_ray_cluster_the_output_is_the_same(
    project: Path,
    adult_frame: pd.DataFrame,
    ray_cluster: str,
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
