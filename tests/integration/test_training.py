"""Tuning under a budget, trials as nested MLflow runs, and a baseline gate that must fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from keel.data import infer_schema, prepare_labels, split_frame
from keel.families.tabular.training import summarize_folds, tune
from tests.conftest import keel_in

pytestmark = pytest.mark.integration


def _project(root: Path, frame: pd.DataFrame, config: dict) -> Path:
    root.mkdir()
    frame.to_csv(root / "adult.csv", index=False)
    base = {"data": "adult.csv", "target": "income", "cv_folds": 3, "ignore_columns": ["fnlwgt"]}
    (root / "keel.yaml").write_text(json.dumps({**base, **config}))
    return root


def test_tune_respects_the_budget_and_prunes(adult_frame: pd.DataFrame) -> None:
    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    splits = split_frame(frame, "income", "binary", seed=0)
    seen = []
    result = tune("lightgbm", splits.train, schema, labels, 0, 6.0, 3, lambda t, b: seen.append(b))
    assert result.metric == "roc_auc" and result.best_score is not None
    assert 0.8 < result.best_score < 1.0
    assert result.trials and result.seconds > 0
    assert {"num_leaves", "learning_rate"} <= set(result.best_params)
    states = {t.state for t in result.trials}
    assert "complete" in states
    assert seen == sorted(seen)  # the best so far never gets worse
    assert tune("linear", splits.train, schema, labels, 0, 5.0, 3).trials == []  # nothing to tune
    # the first trial is the candidate's own defaults: tuning never reports worse
    from keel.families.tabular.training import DEFAULT_TRIALS, build_candidate, cross_validate

    assert result.trials[0].params == DEFAULT_TRIALS["lightgbm"]
    assert result.trials[0].state == "complete"
    assert result.best_score >= result.trials[0].score
    # the best trial's fold metrics ARE the cross-validation of the best parameters
    pipeline = build_candidate("lightgbm", "binary", schema, 0, result.best_params)
    again = cross_validate(pipeline, splits.train, schema, labels, 3, 0)
    assert again == result.best_fold_metrics


def test_a_trial_stops_between_folds_when_the_budget_is_spent(adult_frame, monkeypatch) -> None:
    import keel.families.tabular.training._tuning as tuning

    frame, labels = prepare_labels(adult_frame.head(600), "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    splits = split_frame(frame, "income", "binary", seed=0)

    class Clock:  # every reading is one "second" later: deterministic, no sleeping
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 1.0
            return self.now

    monkeypatch.setattr(tuning, "time", Clock())
    result = tune("lightgbm", splits.train, schema, labels, 0, 8.0, 4)
    states = [t.state for t in result.trials]
    # the first trial always finishes (there is no result otherwise); the second one
    # starts inside the budget and is stopped at a fold boundary once it is spent
    assert states == ["complete", "stopped: budget spent"], states
    assert 0 < len(result.trials[1].fold_scores) < 4
    assert result.best_params == result.trials[0].params


def test_fold_summary() -> None:
    summary = summarize_folds([{"a": 1.0}, {"a": 3.0}, {"a": 2.0, "b": 5.0}])
    assert summary["a"] == {"mean": 2.0, "std": 1.0, "folds": 3}
    assert summary["b"]["folds"] == 1 and summary["b"]["std"] == 0.0


def test_noise_fails_the_gate_and_gets_no_alias(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    noise = adult_frame.copy()
    noise["income"] = np.random.default_rng(0).permutation(noise["income"].to_numpy())
    root = _project(tmp_path / "noise", noise, {"name": "noise", "budget": 3})
    result = keel_in(root, "run", "--json")
    assert result.exit_code == 1, result.output
    assert "finding: baseline gate failed" in result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"]["alias"] is None and payload["model"]["uri"].endswith("/1")
    client = MlflowClient(payload["tracking_uri"])
    assert client.get_model_version("noise", "1").aliases == []
    run = client.get_run(payload["run_id"])
    assert run.data.tags["keel.gate.baseline"] == "failed"
    trials = client.search_runs(
        [payload["experiment_id"]], filter_string="tags.`keel.trial.state` = 'complete'"
    )
    assert len(trials) >= 1 and all(r.data.tags["keel.candidate"] == "lightgbm" for r in trials)


def test_behaviour_tests_gate_the_alias(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    config = {
        "name": "behaved",
        "budget": 0,
        "behaviour": [
            {"kind": "directional", "feature": "capital-gain"},
            {"kind": "minimum", "where": {"sex": "Female"}, "metric": "roc_auc", "min": 0.7},
            {"kind": "invariance", "feature": "sex", "max_change": 0.0001},  # must fail
        ],
    }
    root = _project(tmp_path / "behaviour", adult_frame, config)
    result = keel_in(root, "run", "--json")
    assert result.exit_code == 1, result.output
    assert "behaviour test failed: invariance sex" in result.stderr
    payload = json.loads(result.stdout)
    tests = payload["assessment"]["behaviour"]
    assert [t["passed"] for t in tests] == [True, True, False]
    offending = tests[2]["offending_rows"]
    assert offending and abs(offending[0]["change"]) > 0.0001 and "sex" in offending[0]["features"]
    assert payload["model"]["alias"] is None


def test_reproduce_matches_and_catches_a_change(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    root = _project(
        tmp_path / "repro", adult_frame, {"name": "repro", "candidates": ["lightgbm"], "budget": 4}
    )
    done = keel_in(root, "run", "--json")
    assert done.exit_code in (0, 1), done.output
    payload = json.loads(done.stdout)
    same = keel_in(root, "reproduce", payload["run_id"], "--json")
    assert same.exit_code == 0, same.output
    result = json.loads(same.stdout)
    assert result["identical"] and result["compared"] >= 9
    assert result["candidate"]["recorded"] == result["candidate"]["reproduced"]
    # someone rewrites the stored snapshot: the reproduction must notice
    snapshot = Path(payload["data"]["snapshot"])
    frame = pd.read_parquet(snapshot)
    frame.loc[frame.index[:200], "income"] = ">50K"
    frame.to_parquet(snapshot, index=False)
    changed = keel_in(root, "reproduce", payload["run_id"])
    assert changed.exit_code == 1
    assert "does not reproduce" in changed.stderr
    missing = keel_in(root, "reproduce", "0123456789abcdef")
    assert missing.exit_code == 2 and "not in the tracking store" in missing.stderr


def test_final_fit_on_all_rows_ships_a_model_that_saw_every_row(
    tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    from sklearn.preprocessing import StandardScaler

    from keel.registry import load_package

    config = {
        "name": "allrows",
        "budget": 0,
        "candidates": ["linear"],
        "final_fit": "all_rows",
        "behaviour": [{"kind": "directional", "feature": "education-num"}],
    }
    root = _project(tmp_path / "allrows", adult_frame, config)
    result = keel_in(root, "run", "--json")
    payload = json.loads(result.stdout)
    sizes = payload["data"]["split_sizes"]
    shipped = payload["assessment"]["shipped"]
    assert shipped["fit"] == "all_rows" and shipped["rows"] == sum(sizes.values())
    assert str(payload["assessment"]["refit_rows"]) in shipped["note"]
    # the behaviour test ran on the evaluated model and on the shipped one
    assert [t.get("model") for t in payload["assessment"]["behaviour"]] == [
        None,
        "shipped (all rows)",
    ]
    package = load_package(f"allrows/{payload['model']['version']}", payload["tracking_uri"])
    assert payload["model"]["candidate"] == "linear"  # its scaler counts the rows it saw
    scalers = [
        step
        for _, transformer, _ in package.model.named_steps["preprocess"].transformers_
        for step in getattr(transformer, "named_steps", {}).values()
        if isinstance(step, StandardScaler)
    ]
    assert scalers and all(s.n_samples_seen_ == sum(sizes.values()) for s in scalers)
    html = Path(payload["reports"]["html"]).read_text()
    assert "refitted on every row after evaluation" in html


def test_fairness_is_assessed_and_a_breach_blocks_the_alias(
    tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    config = {
        "name": "fair",
        "budget": 0,
        "sensitive_features": ["sex", "race", "age"],
        "fairness": {"bins": {"age": [30, 50]}, "min_disparate_impact_ratio": 0.8},
    }
    root = _project(tmp_path / "fair", adult_frame, config)
    result = keel_in(root, "run", "--json")
    assert result.exit_code == 1, result.output
    assert "fairness gate failed: sex disparate_impact_ratio" in result.stderr
    assert "Female" in result.stderr  # the groups at either end are named
    payload = json.loads(result.stdout)
    fairness = payload["assessment"]["fairness"]
    assert set(fairness["features"]) == {"sex", "race", "age", "sex & race & age"}
    assert fairness["features"]["age"]["bins"] == [30, 50]
    assert payload["model"]["alias"] is None
    client = MlflowClient(payload["tracking_uri"])
    run = client.get_run(payload["run_id"])
    assert run.data.tags["keel.gate.fairness"] == "failed"
    measured = fairness["features"]["sex"]["measures"]["disparate_impact_ratio"]
    assert run.data.metrics["fairness_sex_disparate_impact_ratio"] == pytest.approx(measured)
    page = Path(payload["reports"]["html"]).read_text()
    assert "<h2>Fairness</h2>" in page and 'aria-label="selection_rate by group"' in page


def test_unknown_sensitive_feature_is_bad_input(tmp_path: Path, adult_frame) -> None:
    root = _project(tmp_path / "typo", adult_frame, {"name": "typo", "sensitive_features": ["sx"]})
    result = keel_in(root, "run")
    assert result.exit_code == 2
    assert "'sx' is not a column" in result.stderr and "did you mean 'sex'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_trial_count_makes_tuning_independent_of_the_clock(adult_frame, monkeypatch) -> None:
    import keel.families.tabular.training._tuning as tuning

    frame, labels = prepare_labels(adult_frame.head(800), "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    splits = split_frame(frame, "income", "binary", seed=0)
    first = tune("lightgbm", splits.train, schema, labels, 0, 0.001, 3, trials=4)

    class Slow:  # a machine 1000x busier: a wall-clock budget would stop at once
        now = 0.0

        def perf_counter(self) -> float:
            self.now += 1000.0
            return self.now

    monkeypatch.setattr(tuning, "time", Slow())
    second = tune("lightgbm", splits.train, schema, labels, 0, 0.001, 3, trials=4)
    assert len(first.trials) == len(second.trials) == 4
    assert first.best_params == second.best_params and first.best_score == second.best_score
