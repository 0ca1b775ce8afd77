"""The ensemble candidate through the whole run: chosen on validation, explained, served,
loaded with plain MLflow, reproduced and reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import keel_in

pytestmark = pytest.mark.integration

CONFIG = {
    "name": "ens",
    "data": "adult.csv",
    "target": "income",
    "ignore_columns": ["fnlwgt"],
    "candidates": ["lightgbm", "xgboost", "ensemble"],
    "trials": 6,
    "cv_folds": 3,
    "seed": 4,  # on this sample and seed the ensemble wins on validation
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame):
    root = tmp_path_factory.mktemp("ensemble")
    adult_frame.to_csv(root / "adult.csv", index=False)
    (root / "keel.yaml").write_text(json.dumps(CONFIG))
    done = keel_in(root, "run", "--json")
    assert done.exit_code in (0, 1), done.output
    return root, json.loads(done.stdout)


def test_the_ensemble_is_selected_on_out_of_fold_scores_and_chosen_on_validation(ran) -> None:
    _, out = ran
    spec = out["tuning"]["ensemble"]["best_params"]
    members = spec["members"]
    assert len(members) >= 2
    assert sum(m["weight"] for m in members) == pytest.approx(1.0)
    assert {m["candidate"] for m in members} <= {"lightgbm", "xgboost"}
    # each member is one of the tuned trials (its parameters, not the defaults)
    assert members[0]["params"] == out["tuning"][members[0]["candidate"]]["best_params"] or (
        "-" in members[0]["name"]
    )
    # never worse than the best single model on the rows it was selected on
    assert out["tuning"]["ensemble"]["best_cv_score"] >= spec["best_single_score"]
    validation = {c["name"]: c["validation"]["roc_auc"] for c in out["candidates"]}
    assert out["model"]["candidate"] == "ensemble"
    assert validation["ensemble"] == max(validation.values())


def test_the_shipped_ensemble_is_explained_exactly_and_served_on_the_fast_path(ran) -> None:
    import mlflow

    from keel.data import records_to_frame
    from keel.families.tabular.responsible._explain import explain
    from keel.families.tabular.serving.fast import compile_pipeline, verified
    from keel.registry import load_package, mlflow_scope

    root, out = ran
    package = load_package(f"ens/{out['model']['version']}", out["tracking_uri"])
    model = package.model
    assert type(model.named_steps["model"]).__name__ == "EnsembleClassifier"
    frame = pd.read_csv(root / "adult.csv").head(40)
    rows = frame[package.schema.feature_names]
    # SHAP of the weighted sum = the weighted sum of the members' SHAP: additive
    found = explain(model, rows, rows, "binary", ">50K")
    assert "weighted sum of" in found.explainer and "log-odds" in found.output
    matrix = model.named_steps["preprocess"].transform(rows)
    log_odds = model.named_steps["model"].decision_function(matrix)
    if list(model.classes_).index(">50K") == 0:
        log_odds = -log_odds
    assert np.allclose(found.base + found.values.sum(axis=1), log_odds, atol=1e-4)
    card = Path(out["reports"]["model_card_md"]).read_text()
    assert "ensemble of " in card and "log-odds averaged" in card
    assert "weighted sum of" in Path(out["reports"]["html"]).read_text()
    # the serving fast path reproduces the pipeline on these rows
    records = json.loads(rows.to_json(orient="records"))
    values, _ = records_to_frame(records, package.schema, as_columns=True)
    table, _ = records_to_frame(records, package.schema)
    assert verified(compile_pipeline(model), model, table, values)
    # plain MLflow loads it (keel is importable, as it must be for the members' classes)
    with mlflow_scope(out["tracking_uri"]):
        plain = mlflow.pyfunc.load_model(f"models:/ens/{out['model']['version']}")
        assert list(plain.predict(rows)) == list(model.predict(rows))


def test_an_ensemble_run_reproduces_and_reuses_its_stages(ran) -> None:
    root, out = ran
    again = keel_in(root, "run", "--json")
    assert again.exit_code in (0, 1), again.output
    stages = json.loads(again.stdout)["stages"]
    assert {s["status"] for s in stages} == {"reused"}
    same = keel_in(root, "reproduce", out["run_id"], "--json")
    assert same.exit_code == 0, same.output
    result = json.loads(same.stdout)
    assert result["identical"] and result["candidate"]["reproduced"] == "ensemble"
