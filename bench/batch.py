"""Batch inference benchmark: `keel predict` against the model's own predict, rows/s and memory.

The demo's model (UCI Adult, LightGBM, trained here by `keel run`), one core
(``OMP_NUM_THREADS=1``), the Adult test rows repeated to ``--rows`` rows, in Parquet and
in CSV. Each measurement runs in a fresh process, so peak memory (``ru_maxrss``) is
the measurement's own:

* **floor**: the whole input already in memory as one typed frame, then
  ``model.predict_proba(frame)`` — the model alone, no reading, checking or writing;
* **naive**: what a script does by hand — read the whole file with pandas, predict,
  write the output;
* **keel**: ``predict_file`` (what `keel predict` runs): chunks of ``--chunk`` rows read,
  checked by serving's rules, answered by /predict's rule, written to Parquet.

Goals (issue 18): Keel's rows/s ≥ 80 % of the floor on one core; peak memory flat on
a file 10× larger than the chunk (also shown at 5× and 20×).
Writes bench/results/batch.json. Run: `.venv/bin/python bench/batch.py` (about 4 min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "adult"))


def worker(kind: str, source: str, tracking: str, version: str, chunk: int) -> dict:
    """One measurement in this process: seconds and peak resident memory."""
    import pandas as pd

    from keel.registry import load_package

    package = load_package(f"bench-batch/{version}", tracking)
    out = Path(tempfile.mkdtemp()) / "out.parquet"
    rows = 0
    if kind == "floor":
        frame = pd.read_parquet(source)[package.schema.feature_names]
        started = time.perf_counter()
        package.model.predict_proba(frame)
        seconds = time.perf_counter() - started
        rows = len(frame)
    elif kind == "naive":
        started = time.perf_counter()
        frame = pd.read_parquet(source) if source.endswith(".parquet") else pd.read_csv(source)
        proba = package.model.predict_proba(frame[package.schema.feature_names])
        pd.DataFrame(proba, columns=[f"p_{c}" for c in package.classes]).to_parquet(out)
        seconds = time.perf_counter() - started
        rows = len(frame)
    else:
        from keel.families.tabular.batch import Source, predict_file

        started = time.perf_counter()
        summary = predict_file(package, Source(source), out, chunk=chunk, force=True)
        seconds = time.perf_counter() - started
        rows = summary["rows"]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "kind": kind,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
        "peak_mb": round(peak_kb / 1024, 1),
    }


def run_worker(kind: str, source: Path, tracking: str, version: str, chunk: int) -> dict:
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "CI": "1"}
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--source",
            str(source),
            "--tracking",
            tracking,
            "--version",
            version,
            "--chunk",
            str(chunk),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--worker")
    parser.add_argument("--source")
    parser.add_argument("--tracking")
    parser.add_argument("--version")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.source, args.tracking, args.version, args.chunk)))
        return 0

    import pandas as pd
    from adult import load_adult

    train, test = load_adult()
    work = Path(tempfile.mkdtemp(prefix="keel-bench-batch-"))
    train.to_csv(work / "adult.csv", index=False)
    config = {
        "name": "bench-batch",
        "data": "adult.csv",
        "target": "income",
        "ignore_columns": ["fnlwgt"],
        "budget": 0,
    }
    (work / "keel.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
    print("training the demo model (keel run) ...", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "keel", "run", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    result = json.loads(done.stdout)
    tracking, version = result["tracking_uri"], result["model"]["version"]
    rows = test.drop(columns=["income"]).dropna().reset_index(drop=True)
    sizes = {5: 5 * args.chunk, 10: 10 * args.chunk, 20: 20 * args.chunk}
    files = {}
    for times, n in sizes.items():
        big = pd.concat([rows] * (n // len(rows) + 1), ignore_index=True).head(n)
        files[times] = work / f"rows-{times}x.parquet"
        big.to_parquet(files[times])
        if times == 10:
            files["csv"] = work / "rows-10x.csv"
            big.to_csv(files["csv"], index=False)
    cells: dict = {}
    for round_ in range(2):  # two rounds, interleaved: the median of noise
        for kind, source in (
            ("floor", files[10]),
            ("keel", files[10]),
            ("naive", files[10]),
            ("keel_csv", files["csv"]),
        ):
            cell = run_worker(kind.removesuffix("_csv"), source, tracking, version, args.chunk)
            cells.setdefault(kind, []).append(cell)
            print(round_, kind, cell, flush=True)
    memory = {}
    for times in (5, 10, 20):
        memory[f"{times}x_chunk"] = {
            "keel": run_worker("keel", files[times], tracking, version, args.chunk),
            "naive": run_worker("naive", files[times], tracking, version, args.chunk),
        }
        print(times, memory[f"{times}x_chunk"], flush=True)

    def best(kind: str) -> dict:
        return max(cells[kind], key=lambda c: c["rows_per_second"])

    summary = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "chunk": args.chunk,
        "rows": sizes[10],
        "throughput": {k: best(k) for k in cells},
        "keel_over_floor": round(
            best("keel")["rows_per_second"] / best("floor")["rows_per_second"], 3
        ),
        "keel_csv_over_floor": round(
            best("keel_csv")["rows_per_second"] / best("floor")["rows_per_second"], 3
        ),
        "keel_over_naive": round(
            best("keel")["rows_per_second"] / best("naive")["rows_per_second"], 3
        ),
        "peak_memory_mb": memory,
        "all_cells": cells,
    }
    out = ROOT / "bench" / "results" / "batch.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "all_cells"}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
