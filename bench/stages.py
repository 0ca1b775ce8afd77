"""Stage reuse benchmark: `keel run` again with nothing changed, and with only `card:` changed.

What a user would otherwise do — re-run their training script, which runs everything —
is the first `keel run` (every stage runs). Beside it, in the same session on the same
data: the identical re-run (every stage reused, no new version registered) and a run
where only the card's words changed (only the `card` stage runs). Each command is a
whole `keel run --json` process, timed from outside, so start-up is included.

The identical re-run is timed twice over: the first one (it writes the `idempotent`
gate's evidence on the version, through MLflow) and then `--repeats` more (nothing to
write: the steady state of a no-op), reported as median and range. Beside them, in the
same folder, DVC answers the same question — `dvc repro` of a stage running `keel run`
with the data and keel.yaml as dependencies, when nothing changed — timed the same way.

Data: UCI Adult's 32,561 training rows (the demo's data), `trials:` set so that the
runs are repeatable, in a temporary project folder.

Run: `.venv/bin/python bench/stages.py [--trials N]`; writes bench/results/stages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "adult"))

from adult import load_adult  # noqa: E402


def keel_run(folder: Path, *options: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "keel", "run", "--json", *options],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"keel run failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def dvc_noops(folder: Path, repeats: int) -> list[float]:
    """`dvc repro` with nothing changed: a stage running `keel run` on the same inputs."""
    dvc = [sys.executable, "-m", "dvc"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

    def call(*args: str) -> float:
        started = time.perf_counter()
        subprocess.run([*dvc, *args], cwd=folder, env=env, check=True, capture_output=True)
        return time.perf_counter() - started

    call("init", "--no-scm", "-q")
    stage = {
        "cmd": f"{sys.executable} -m keel run --json > last_run.json",
        "deps": ["adult.csv", "keel.yaml"],
        "outs": [{"last_run.json": {"cache": False}}],
    }
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    call("repro", "-q")  # runs it once (a keel no-op) and writes dvc.lock
    return [call("repro", "-q") for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    train, _ = load_adult()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train.to_csv(folder / "adult.csv", index=False)
        config = {
            "name": "adult-income",
            "data": "adult.csv",
            "target": "income",
            "sensitive_features": ["sex", "race"],
            "ignore_columns": ["fnlwgt"],
            "trials": args.trials,
            "cv_folds": 3,
        }
        (folder / "keel.yaml").write_text(yaml.safe_dump(config))
        first_seconds, first = keel_run(folder)
        again_seconds, again = keel_run(folder)
        noops = [keel_run(folder)[0] for _ in range(args.repeats)]
        dvc = dvc_noops(folder, args.repeats)
        config["card"] = {"intended_use": "Benchmarking stage reuse."}
        (folder / "keel.yaml").write_text(yaml.safe_dump(config))
        card_seconds, card = keel_run(folder)
    statuses = {s["status"] for s in again["stages"]}
    ran_for_card = [s["name"] for s in card["stages"] if s["status"] == "ran"]
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rows": len(train),
        "trials": args.trials,
        "first_run_seconds": round(first_seconds, 2),
        "identical_rerun_seconds": round(again_seconds, 2),
        "identical_rerun_speedup": round(first_seconds / again_seconds, 1),
        "identical_rerun_statuses": sorted(statuses),
        "identical_rerun_same_version": again["model"]["version"] == first["model"]["version"],
        "noop_seconds": [round(x, 3) for x in noops],
        "noop_median_seconds": round(statistics.median(noops), 3),
        "noop_speedup": round(first_seconds / statistics.median(noops), 1),
        "dvc_repro_noop_seconds": [round(x, 3) for x in dvc],
        "dvc_repro_noop_median_seconds": round(statistics.median(dvc), 3),
        "keel_noop_vs_dvc": round(statistics.median(dvc) / statistics.median(noops), 2),
        "card_only_seconds": round(card_seconds, 2),
        "card_only_speedup": round(first_seconds / card_seconds, 1),
        "card_only_ran": ran_for_card,
        "card_only_same_version": card["model"]["version"] == first["model"]["version"],
        "first_run_stage_seconds": first["stage_seconds"],
    }
    out = ROOT / "bench" / "results" / "stages.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
