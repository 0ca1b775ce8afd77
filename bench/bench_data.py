"""Data benchmark: Keel's validation + profiling of 1,000,000 rows x 20 columns.

Beside it, in the same run: the time to read the file (CSV and Parquet) and pandera
alone validating the same rules (types, nullability, ranges, categories). The goal of
issue 3: profiling + validation within 3x the read time, peak memory under 3x the
in-memory size of the data.

Data: 14 numeric and 6 categorical columns, seeded, with a few missing values; written
once to a temporary folder as CSV and Parquet. Peak memory is measured with
tracemalloc (NumPy and pandas report their buffers to it) on top of the loaded frame.

Run: `.venv/bin/python bench/bench_data.py [--rows N]`; writes bench/results/data.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from keel.data import Profile, infer_schema, validate_frame

ROOT = Path(__file__).resolve().parents[1]


def make_data(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for i in range(7):
        data[f"num_{i}"] = rng.normal(100 * i, 10 + i, rows).round(3)
    for i in range(7, 14):
        data[f"int_{i}"] = rng.integers(0, 1000 * i, rows)
    for i in range(6):
        levels = np.array([f"level_{i}_{k}" for k in range(5 + 5 * i)])
        data[f"cat_{i}"] = levels[rng.integers(0, len(levels), rows)]
    frame = pd.DataFrame(data)
    for i in range(3):
        frame.loc[rng.choice(rows, rows // 100, replace=False), f"num_{i}"] = np.nan
        frame.loc[rng.choice(rows, rows // 200, replace=False), f"cat_{i}"] = None
    return frame


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    fn()
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top


def pandera_alone(schema_keel) -> pa.DataFrameSchema:
    """The same rules written directly in pandera with its built-in checks."""
    columns = {}
    for c in schema_keel.columns:
        checks = []
        if c.kind in ("integer", "float"):
            low, high = c.allowed_range()
            checks.append(pa.Check.in_range(low, high))
            dtype = "int64" if c.kind == "integer" else "float64"
        else:
            checks.append(pa.Check.isin(list(c.categories)))
            dtype = None
        columns[c.name] = pa.Column(dtype, checks=checks, nullable=c.nullable)
    return pa.DataFrameSchema(columns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    frame = make_data(args.rows)
    folder = Path(tempfile.mkdtemp(prefix="keel-bench-data-"))
    csv, parquet = folder / "data.csv", folder / "data.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)

    read_csv, loaded = timed(lambda: pd.read_csv(csv), repeat=2)
    read_parquet, _ = timed(lambda: pd.read_parquet(parquet))
    frame = loaded
    size = int(frame.memory_usage(deep=True).sum())
    schema = infer_schema(frame, None)

    def keel_both():
        violations = validate_frame(frame, schema)
        profile = Profile.from_frame(frame, schema)
        return violations, profile

    keel_validate, violations = timed(lambda: validate_frame(frame, schema))
    keel_profile, _ = timed(lambda: Profile.from_frame(frame, schema))
    keel_total, _ = timed(keel_both)
    pandera_schema = pandera_alone(schema)
    pandera_time, _ = timed(lambda: pandera_schema.validate(frame, lazy=True))
    keel_peak = peak(keel_both)
    pandera_peak = peak(lambda: pandera_schema.validate(frame, lazy=True))

    report = {
        "benchmark": "validation + profiling, 14 numeric + 6 categorical columns",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": args.rows,
        "in_memory_mb": round(size / 2**20, 1),
        "seconds": {
            "read_csv": round(read_csv, 3),
            "read_parquet": round(read_parquet, 3),
            "keel_validate": round(keel_validate, 3),
            "keel_profile": round(keel_profile, 3),
            "keel_validate_and_profile": round(keel_total, 3),
            "pandera_alone_validate": round(pandera_time, 3),
        },
        "peak_extra_memory_mb": {
            "keel_validate_and_profile": round(keel_peak / 2**20, 1),
            "pandera_alone": round(pandera_peak / 2**20, 1),
        },
        "ratios": {
            "keel_over_read_csv": round(keel_total / read_csv, 2),
            "keel_over_read_parquet": round(keel_total / read_parquet, 2),
            "keel_validate_over_pandera_alone": round(keel_validate / pandera_time, 2),
            "keel_peak_over_data_size": round(keel_peak / size, 2),
        },
        "violations_found": len(violations),
    }
    out = ROOT / "bench" / "results" / "data.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    for path in (csv, parquet):
        path.unlink()
    folder.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
