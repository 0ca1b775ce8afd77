"""Run one AutoML tool on a train CSV, predict a test CSV (run in the tool's own venv).

Called by ``bench/quality.py`` with the python of ``bench/.venvs/<tool>``: the tools
pin their own pandas/scikit-learn, so they never share Keel's environment. Writes the
test predictions (and class probabilities) as JSON; the scoring happens in Keel's
environment with the same metric code for every tool.

Usage: python _automl_runner.py TOOL TRAIN.csv TEST.csv TARGET TASK METRIC BUDGET OUT.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import pandas as pd

FLAML_METRIC = {
    "roc_auc": "roc_auc",
    "rmse": "rmse",
    "f1_macro": "macro_f1",
    "average_precision": "ap",
}
AUTOGLUON_METRIC = {
    "roc_auc": "roc_auc",
    "rmse": "root_mean_squared_error",
    "f1_macro": "f1_macro",
    "average_precision": "average_precision",
}


def main() -> int:
    tool, train_path, test_path, target, task, metric, budget, out = sys.argv[1:9]
    budget = float(budget)
    train = pd.read_csv(train_path)
    test = pd.read_csv(test_path).drop(columns=[target])
    if task != "regression":
        train[target] = train[target].astype(str)
    started = time.perf_counter()
    if tool == "flaml":
        from flaml import AutoML

        model = AutoML()
        model.fit(
            train.drop(columns=[target]),
            train[target],
            task="regression" if task == "regression" else "classification",
            metric=FLAML_METRIC[metric],
            time_budget=budget,
            n_jobs=1,  # Keel fits with one thread too
            seed=0,
            verbose=0,
        )
        best = str(model.best_estimator)
    elif tool == "autogluon":
        from autogluon.tabular import TabularPredictor

        model = TabularPredictor(
            label=target,
            eval_metric=AUTOGLUON_METRIC[metric],
            problem_type=task,
            path=tempfile.mkdtemp(prefix="ag-"),
            verbosity=0,
        ).fit(train, time_limit=budget, presets="medium_quality", num_cpus=1)
        best = str(model.model_best)
    else:
        raise SystemExit(f"unknown tool {tool!r}")
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "best": best, "predictions": model.predict(test).tolist()}
    if task != "regression":
        proba = model.predict_proba(test)
        if isinstance(proba, pd.DataFrame):
            result["classes"] = [str(c) for c in proba.columns]
            result["proba"] = proba.to_numpy().tolist()
        else:
            result["classes"] = [str(c) for c in model.classes_]
            result["proba"] = proba.tolist()
    with open(out, "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
