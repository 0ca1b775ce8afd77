"""`keel run` then `keel serve` for real: SQLite MLflow store, uvicorn on loopback, real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import free_port

pytestmark = pytest.mark.integration

KEEL = [sys.executable, "-m", "keel"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["CI"] = "1"
    return env


def keel(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*KEEL, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=_env()
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("adult")
    adult_frame.to_csv(root / "adult.csv", index=False)
    (root / "keel.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "income",
                "data": "adult.csv",
                "target": "income",
                "sensitive_features": ["sex", "race"],
                "ignore_columns": ["fnlwgt"],
                "budget": 0,
                "cv_folds": 3,
            }
        )
    )
    return root


@pytest.fixture(scope="module")
def first_run(project: Path) -> dict:
    done = keel("run", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # stdout holds exactly one JSON object


def test_run_reports_everything_in_one_json_object(first_run: dict, project: Path) -> None:
    assert first_run["model"]["name"] == "income"
    assert first_run["model"]["alias"] == "champion"
    assert first_run["model"]["version"] == "1"
    assert first_run["task"] == "binary"
    assert first_run["metrics"]["roc_auc"] > 0.8
    assert {c["name"] for c in first_run["candidates"]} == {
        "dummy",
        "linear",
        "shallow_tree",
        "lightgbm",
    }
    assessment = first_run["assessment"]
    assert assessment["gate"]["passed"]  # hence the champion alias
    roc = assessment["intervals"]["roc_auc"]
    assert roc["low"] < first_run["metrics"]["roc_auc"] < roc["high"]
    assert set(assessment["cross_validation"]["roc_auc"]) == {"mean", "std", "folds"}
    assert 0 < assessment["threshold"]["value"] < 1
    sizes = first_run["data"]["split_sizes"]
    assert assessment["refit_rows"] == sizes["train"] + sizes["validation"]
    diagnostics = assessment["diagnostics"]
    counts = diagnostics["confusion_matrix"]["counts"]
    assert sum(map(sum, counts)) == first_run["data"]["split_sizes"]["test"]
    assert len(diagnostics["calibration"]) >= 5
    assert set(diagnostics["per_class"]) == {"<=50K", ">50K"}
    curve = diagnostics["learning_curve"]
    assert [p["fraction"] for p in curve["points"]] == [0.1, 0.25, 0.5, 0.75, 1.0]
    assert curve["points"][0]["train"] > curve["points"][0]["validation"]  # small data overfits
    assert curve["diagnosis"].split(":")[0] in {
        "high variance",
        "high bias",
        "fine",
        "fine, and still learning",
    }
    for path in first_run["reports"].values():
        assert Path(path).is_file()
    assert Path(first_run["data"]["snapshot"]).is_file()
    html = Path(first_run["reports"]["html"]).read_text()
    assert "<svg" in html and first_run["data"]["digest"] in html


def test_mlflow_sees_run_dataset_and_champion(first_run: dict, project: Path) -> None:
    client = MlflowClient(tracking_uri=first_run["tracking_uri"])
    run = client.get_run(first_run["run_id"])
    assert run.data.params["seed"] == "42"
    assert run.data.metrics["test_roc_auc"] == pytest.approx(first_run["metrics"]["roc_auc"])
    assert run.data.tags["keel.dataset.digest"] == first_run["data"]["digest"]
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest == first_run["data"]["digest"]
    children = client.search_runs(
        [first_run["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{first_run['run_id']}'",
    )
    assert {r.info.run_name for r in children} == {c["name"] for c in first_run["candidates"]}
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])
    artifacts = {a.path for a in client.list_artifacts(first_run["run_id"])}
    assert {"keel.yaml", "schema.json", "profile.json", "reports"} <= artifacts
    version = client.get_model_version_by_alias("income", "champion")
    assert str(version.version) == "1" and version.run_id == first_run["run_id"]
    model_version = client.get_model_version("income", "1")
    assert model_version.aliases == ["champion"]
    # artifacts stay under .keel/, never in ./mlruns
    assert (project / ".keel" / "artifacts").is_dir()
    assert not (project / "mlruns").exists()


def test_identical_run_reuses_every_stage_and_registers_nothing(
    first_run: dict, project: Path
) -> None:
    again = keel("run", "--json", cwd=project)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert [s["name"] for s in result["stages"]] == [s["name"] for s in first_run["stages"]]
    assert {s["status"] for s in first_run["stages"]} == {"ran"}
    assert {s["status"] for s in result["stages"]} == {"reused"}
    assert [s["key"] for s in result["stages"]] == [s["key"] for s in first_run["stages"]]
    assert result["model"]["version"] == "1" and result["run_id"] == first_run["run_id"]
    assert result["metrics"] == first_run["metrics"]
    client = MlflowClient(first_run["tracking_uri"])
    assert len(client.search_model_versions("name = 'income'")) == 1


def test_run_without_cache_is_challenger_and_reuses_the_snapshot(
    first_run: dict, project: Path
) -> None:
    second = keel("run", "--json", "--no-cache", cwd=project)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert {s["status"] for s in result["stages"]} == {"ran"}
    assert result["model"]["alias"] == "challenger" and result["model"]["version"] == "2"
    assert result["data"]["snapshot"] == first_run["data"]["snapshot"]
    assert result["metrics"] == first_run["metrics"]  # seeded: same data, same numbers
    assert len(list((project / ".keel" / "data").iterdir())) == 1


@pytest.fixture(scope="module")
def server(first_run: dict, project: Path) -> Iterator[str]:
    port = free_port()
    log = (project / "serve.log").open("w")
    process = subprocess.Popen(
        [*KEEL, "serve", "--port", str(port)],
        cwd=project,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise AssertionError(f"server exited: {(project / 'serve.log').read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        log.close()
        raise AssertionError("server did not start in 120 s")
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_served_predictions_equal_the_registry_model(server: str, first_run, adult_frame) -> None:
    rows = adult_frame.drop(columns=["income"]).sample(25, random_state=5)
    instances = json.loads(rows.to_json(orient="records"))
    answer = httpx.post(f"{server}/predict", json={"instances": instances}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    mlflow.set_tracking_uri(first_run["tracking_uri"])
    try:
        model = mlflow.sklearn.load_model("models:/income@champion")
        pyfunc = mlflow.pyfunc.load_model("models:/income@champion")
        plain = np.asarray(pyfunc.predict(rows.drop(columns=["fnlwgt"])))
    finally:
        mlflow.set_tracking_uri(None)
    # the server decides at the threshold chosen on validation, the one the test
    # metrics were computed at; the plain MLflow model decides at 0.5
    threshold = first_run["assessment"]["threshold"]["value"]
    assert body["decision_threshold"] == threshold
    p_high = model.predict_proba(rows.drop(columns=["fnlwgt"]))[:, 1]
    assert list(model.classes_) == ["<=50K", ">50K"]
    assert body["predictions"] == np.where(p_high >= threshold, ">50K", "<=50K").tolist()
    between = (p_high >= min(threshold, 0.5)) & (p_high < max(threshold, 0.5))
    assert (np.asarray(body["predictions"]) == plain)[~between].all()
    assert body["model"] == {
        "name": "income",
        "version": "1",
        "alias": "champion",
        "semver": "1.0.0",
    }
    assert all(abs(sum(p.values()) - 1) < 1e-5 for p in body["probabilities"])


def test_real_server_rejects_bad_rows_with_422(server: str) -> None:
    answer = httpx.post(f"{server}/predict", json={"instances": [{"age": "x"}]}, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("instances[0].age")
    answer = httpx.post(
        f"{server}/predict",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 422


def test_server_binds_loopback_only(server: str) -> None:
    """Ask the kernel what the server listens on, rather than trusting the URL we built."""
    import psutil

    port = int(server.rsplit(":", 1)[1])
    listening = [
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert listening == ["127.0.0.1"]
    assert httpx.get(f"{server}/health", timeout=5).json()["status"] == "ok"


def test_serve_with_two_workers(first_run: dict, project: Path, adult_frame) -> None:
    port = free_port()
    log = (project / "serve-workers.log").open("w")
    process = subprocess.Popen(
        [*KEEL, "serve", "--port", str(port), "--workers", "2", "--model", "income/1"],
        cwd=project,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, (project / "serve-workers.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        row = json.loads(adult_frame.drop(columns=["income"]).head(1).to_json(orient="records"))
        answers = {
            httpx.post(f"{url}/predict", json={"instances": row}, timeout=30).json()["model"][
                "version"
            ]
            for _ in range(6)
        }
        assert answers == {"1"}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_reports_render_in_a_real_browser(first_run: dict, project: Path, browser) -> None:
    page = browser(Path(first_run["reports"]["html"]))
    dom, shot = page.dom, page.screenshot
    assert page.console == [] and page.requests == []
    assert "Test metrics of the chosen model" in dom
    assert dom.count("<svg") >= 1 and "lightgbm" in dom
    assert first_run["data"]["digest"] in dom
    assert shot.stat().st_size > 10_000  # a real picture, not a blank page
    validated = keel(
        "validate", "adult.csv", "--target", "income", "--report", "vreport", "--json", cwd=project
    )
    assert validated.returncode == 0, validated.stderr
    page = browser(project / "vreport" / "validation.html")
    dom, shot = page.dom, page.screenshot
    assert page.console == [] and page.requests == []
    assert "valid" in dom and dom.count("<svg") >= 10
    assert shot.stat().st_size > 10_000
