"""Monitoring at scale: `keel monitor`'s chunked reading of the prediction log, peak memory.

A SQLite prediction log of ``--rows`` rows (default 10 million) of one model is written
the way `keel serve` writes it (UCI Adult test rows as inputs, 4 features, a label on
every fifth row, 10 days of traffic). Each measurement runs in a fresh process and reports
its own peak resident memory (``ru_maxrss``) and time:

* **chunked** (what `keel monitor` runs): ``iter_log`` pages of 100,000 rows into
  ``monitor_chunks`` (day windows, drift, latency, performance, fairness, skew);
* **whole** (what it ran before): ``read_log`` of every row, then ``monitor``.

The whole-log path is measured only up to ``--whole-max`` rows (its memory grows with the
log). The chunked path runs at several sizes to show that its memory stays flat.
Writes bench/results/monitor_scale.json. Run: `.venv/bin/python bench/monitor_scale.py`
(about 25 minutes at 10 million rows; `--rows 2000000` for a quick look).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "adult"))
FEATURES = ["age", "sex", "race", "hours-per-week"]
DAYS = 10


def write_log(path: Path, rows: int) -> None:
    """``rows`` predictions over 10 days, batched as the server's writer does."""
    import orjson
    from adult import load_adult

    from keel.monitoring._logdb import FEEDBACK
    from keel.serving._log import PredictionLog

    _, test = load_adult()
    inputs = test[FEATURES].to_dict(orient="records")
    truth = test["income"].astype(str).tolist()
    rng = np.random.default_rng(0)
    log = PredictionLog(f"sqlite:///{path}", flush_seconds=3600)
    start = time.time() - DAYS * 86_400
    step = DAYS * 86_400 / rows
    batch = 10_000
    insert = log._insert
    with log.engine.begin() as conn:
        for first in range(0, rows, batch):
            n = min(batch, rows - first)
            values = []
            for i in range(first, first + n):
                k = i % len(inputs)
                values.append(
                    (
                        f"{i:032x}",
                        0,
                        start + i * step,
                        "scale",
                        "1",
                        orjson.dumps(inputs[k]).decode(),
                        orjson.dumps(truth[k] if rng.random() < 0.8 else ">50K").decode(),
                        float(rng.random()),
                        float(rng.gamma(2.0, 1.0)),
                        "champion",
                        None,
                        None,
                        None,
                    )
                )
            conn.exec_driver_sql(insert, values)
            labels = [
                {
                    "request_id": v[0],
                    "row": 0,
                    "label": orjson.dumps(truth[int(v[0], 16) % len(truth)]).decode(),
                    "time": v[2],
                }
                for v in values[::5]
            ]
            conn.execute(FEEDBACK.insert(), labels)
    log._stop.set()
    log.engine.dispose()


def worker(kind: str, path: str) -> dict:
    import pandas as pd
    from adult import load_adult

    from keel.monitoring import DriftReference, log_frame, monitor, monitor_chunks
    from keel.serving._log import iter_log, read_log

    train, _ = load_adult()
    features = DriftReference.from_frame(train[FEATURES])
    outputs = DriftReference.from_frame(pd.DataFrame({"prediction": train["income"].astype(str)}))
    meta = {
        "name": "scale",
        "version": "1",
        "task": "binary",
        "positive_class": ">50K",
        "sensitive_features": ["sex", "race"],
    }
    url = f"sqlite:///{path}"
    started = time.perf_counter()
    if kind == "chunked":
        report = monitor_chunks(
            iter_log(url, "scale", "1", 100_000), features, outputs, meta, window="day"
        )
    else:
        rows = read_log(url, model_name="scale", model_version="1")
        report = monitor(log_frame(rows), features, outputs, meta, window="day")
    seconds = time.perf_counter() - started
    found = report.to_dict()
    return {
        "kind": kind,
        "rows": found["rows"],
        "windows": len(found["windows"]),
        "seconds": round(seconds, 1),
        "rows_per_second": round(found["rows"] / seconds),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "skew_drifted": found["skew"].get("drifted_columns"),
    }


def run(kind: str, path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--path", str(path)],
        capture_output=True,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--whole-max", type=int, default=2_000_000)
    parser.add_argument("--worker")
    parser.add_argument("--path")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.path)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="keel-bench-monitor-"))
    sizes = sorted({min(args.rows, 1_000_000), min(args.rows, args.whole_max), args.rows})
    cells = []
    for rows in sizes:
        path = work / f"log-{rows}.db"
        started = time.perf_counter()
        write_log(path, rows)
        print(f"wrote {rows:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        kinds = ["chunked"] + (["whole"] if rows <= args.whole_max else [])
        for kind in kinds:
            cell = run(kind, path) | {"log_mb": round(path.stat().st_size / 2**20)}
            cells.append(cell)
            print(cell, flush=True)
        path.unlink()
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cells": cells,
    }
    out = ROOT / "bench" / "results" / "monitor_scale.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
