"""`run_project` in-process on other real datasets: multiclass, regression, Parquet input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine

from keel.config import load_config
from keel.data import Schema, infer_schema, write_schema
from keel.pipeline import run_project
from keel.registry import load_package

pytestmark = pytest.mark.integration


def _project(root: Path, frame: pd.DataFrame, config: dict, data_name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if data_name.endswith(".parquet"):
        frame.to_parquet(root / data_name, index=False)
    else:
        frame.to_csv(root / data_name, index=False)
    (root / "keel.yaml").write_text(json.dumps({**config, "data": data_name}))
    return root / "keel.yaml"


def test_multiclass_wine_from_parquet(tmp_path: Path) -> None:
    frame = load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "cultivar_a", 1: "cultivar_b", 2: "cultivar_c"})
    config = load_config(
        _project(
            tmp_path / "wine",
            frame,
            {
                "name": "wine",
                "target": "target",
                "budget": 0,
                "cv_folds": 3,
                "candidates": ["xgboost"],
                "seed": 1,  # a seed where XGBoost wins validation (linear often does)
            },
            "wine.parquet",
        )
    )
    stages: list[str] = []
    result = run_project(config, observer=lambda stage, detail: stages.append(stage))
    assert result.task == "multiclass" and result.primary_metric == "f1_macro"
    assert result.metrics["f1_macro"] > 0.8
    assert stages[0] == "ingest" and "register" in stages
    gate = result.assessment["gate"]
    # 36 test rows: a model rarely beats the best other baseline with 95% confidence;
    # when it does not, the version is registered without an alias.
    assert gate["passed"] == (result.model["alias"] == "champion")
    package = load_package(f"wine/{result.model['version']}", result.tracking_uri)
    assert package.task == "multiclass"
    assert package.classes == ("cultivar_a", "cultivar_b", "cultivar_c")
    # seeded and pinned: XGBoost wins validation here, so its package is what is tested
    assert result.model["candidate"] == "xgboost"
    # XGBoost only takes labels 0..k-1: the packaged model still speaks the labels
    predicted = package.model.predict(frame[package.schema.feature_names].head(3))
    assert set(predicted) <= set(package.classes)
    by_name = {c["name"]: c for c in result.candidates}
    assert by_name["xgboost"]["test"]["accuracy"] > 0.8
    # the drift reference travels with the model: statistics of the training rows
    assert package.profile["rows"] == result.data["split_sizes"]["train"]
    assert package.documents["schema.json"] == package.schema.to_dict()
    assert set(package.profile["columns"]) == set(package.schema.names)


def test_regression_diabetes_with_an_edited_schema(tmp_path: Path) -> None:
    frame = load_diabetes(as_frame=True).frame
    schema = infer_schema(frame, "target")
    edited = replace(schema["bmi"], role="ignored", note="edited by hand")
    columns = tuple(edited if c.name == "bmi" else c for c in schema.columns)
    write_schema(Schema(columns=columns, target="target"), tmp_path / "diabetes" / "schema.yaml")
    config = load_config(
        _project(
            tmp_path / "diabetes",
            frame,
            {
                "name": "diabetes",
                "target": "target",
                "candidates": ["dummy", "linear"],
                "budget": 0,
                "cv_folds": 3,
                "schema": "schema.yaml",
            },
            "diabetes.csv",
        )
    )
    result = run_project(config)
    package = load_package(f"diabetes/{result.model['version']}", result.tracking_uri)
    assert (
        "bmi" not in package.schema.feature_names and package.schema["bmi"].note == "edited by hand"
    )
    assert result.task == "regression" and result.primary_metric == "rmse"
    by_name = {c["name"]: c for c in result.candidates}
    assert result.model["candidate"] == "linear"
    # 89 test rows: linear vs the shallow-tree baseline is not clear with 95% confidence
    gate = result.assessment["gate"]
    assert gate["baseline"] == "shallow_tree" and gate["passed"] == bool(result.model["alias"])
    assert by_name["linear"]["test"]["rmse"] < by_name["dummy"]["test"]["rmse"]
    assert "probabilities" not in json.dumps(result.to_dict())
    residuals = result.assessment["diagnostics"]["residuals"]
    assert sum(r["rows"] for r in residuals) == result.data["split_sizes"]["test"]
    assert result.metrics["mape"] > 0


def test_time_split_run_records_its_boundaries(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    frame = adult_frame.assign(
        day=pd.date_range("2021-01-01", periods=len(adult_frame), freq="6h").strftime("%Y-%m-%d")
    )
    config = load_config(
        _project(
            tmp_path / "timed",
            frame,
            {
                "name": "timed",
                "target": "income",
                "time_column": "day",
                "candidates": ["dummy", "lightgbm"],
                "budget": 0,
                "cv_folds": 3,
            },
            "timed.csv",
        )
    )
    result = run_project(config)
    assert result.data["split_method"] == "time"
    details = result.data["split_details"]
    assert details["train_until"] < details["validation_from"] < details["test_from"]
    period = result.data["period"]
    assert period.startswith(f"{frame['day'].min()} to {frame['day'].max()} (day)")
    assert f"tested from {details['test_from']}" in period
    package = load_package(f"timed/{result.model['version']}", result.tracking_uri)
    assert "day" not in package.schema.feature_names
    assert result.data["class_balance"][">50K"] < 0.5


def test_configured_schema_with_integer_classes(tmp_path: Path) -> None:
    """A hand-written schema with integer class labels: checked once, the run goes through."""
    frame = load_wine(as_frame=True).frame  # target 0, 1, 2 as integers
    write_schema(infer_schema(frame, "target"), tmp_path / "wine" / "schema.yaml")
    config = load_config(
        _project(
            tmp_path / "wine",
            frame,
            {
                "name": "wineint",
                "target": "target",
                "candidates": ["dummy", "linear"],
                "budget": 0,
                "cv_folds": 3,
                "schema": "schema.yaml",
            },
            "wine.csv",
        )
    )
    result = run_project(config)
    assert result.task == "multiclass"
    assert set(result.assessment["diagnostics"]["per_class"]) == {"0", "1", "2"}
