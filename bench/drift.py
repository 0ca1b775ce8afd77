"""Drift benchmark: Keel vs Evidently vs NannyML vs a scipy loop vs the np.sort floor.

Reference and current tables of N rows × 20 columns (14 numeric — normal, skewed,
heavy-tailed, integer-valued with ties —, 6 categorical with 3 to 40 levels), the same
generator for both; the current one shifted in 3 numeric and 1 categorical column.
Every tool runs in its own process on the same Parquet files (load time excluded
from "compute", imports reported apart), with peak memory from the kernel
(``wait4``'s ``ru_maxrss``):

* keel — ``keel.monitoring.drift_report`` (KS / chi-square, PSI, JS, Wasserstein),
  columns spread over one forked process per core (``workers``), as ``keel drift`` does;
* keel-1-process — the same in one process;
* keel-reference — the same from the precomputed package reference (built apart);
* scipy — a loop of ``ks_2samp`` and ``chi2_contingency`` (what a user writes);
* floor — one ``np.sort`` per numeric column of the current table;
* nannyml — ``UnivariateDriftCalculator`` (KS + chi-square), own venv;
* evidently — ``Report([DataDriftPreset()])`` with an HTML file, own venv (Evidently
  0.7 does not import with pandas 3).

Also the whole command at 300,000 rows: ``keel drift ref cur --json`` vs a script
running Evidently's preset, imports included. Verdicts per column are compared with
scipy's at alpha 0.05 (no correction).

Run: `.venv/bin/python bench/drift.py [--rows 1000000]`. Writes bench/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _venvs import tool_python  # noqa: E402 (bench helper beside this file)

SHIFTED = ["n00", "n05", "n09", "c00"]
NUMERIC = [f"n{i:02d}" for i in range(14)]
CATEGORICAL = [f"c{i:02d}" for i in range(6)]
ALPHA = 0.05


def make_table(rows: int, seed: int, shift: bool) -> pd.DataFrame:
    """One table; ``shift`` moves n00 (+0.05 sd), n05 (scale ×1.05), n09 (+1), c00."""
    rng = np.random.default_rng(seed)
    columns = {
        "n00": rng.normal(0, 1, rows),
        "n01": rng.normal(50, 10, rows),
        "n02": rng.lognormal(0, 1, rows),
        "n03": rng.exponential(2, rows),
        "n04": rng.uniform(0, 100, rows),
        "n05": rng.gamma(2, 2, rows),
        "n06": rng.standard_t(3, rows),
        "n07": rng.beta(2, 5, rows),
        "n08": np.round(rng.normal(100, 15, rows), 2),  # ties, as in money amounts
        "n09": rng.integers(18, 91, rows).astype(float),  # ages: many ties
        "n10": rng.integers(1, 100, rows).astype(float),  # hours per week
        "n11": rng.poisson(3, rows).astype(float),  # counts
        "n12": np.where(rng.random(rows) < 0.3, rng.normal(-2, 0.5, rows), rng.normal(2, 1, rows)),
        "n13": rng.integers(0, 1001, rows).astype(float),
    }
    if shift:
        columns["n00"] = columns["n00"] + 0.05
        columns["n05"] = columns["n05"] * 1.05
        columns["n09"] = columns["n09"] + 1
    levels = [3, 5, 8, 12, 20, 40]
    for i, k in enumerate(levels):
        p = 1.0 / np.arange(1, k + 1)
        p = p / p.sum()
        if shift and i == 0:
            p = p + np.array([-0.03, 0.015, 0.015])
        columns[f"c{i:02d}"] = np.array([f"L{j}" for j in range(k)])[rng.choice(k, rows, p=p)]
    return pd.DataFrame(columns)


KEEL = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
from keel.monitoring import DriftReference, DriftThresholds, drift_report
imported = time.perf_counter() - t0
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
loaded = time.perf_counter() - t0 - imported
built = 0.0
t = time.perf_counter()
reference = ref
if sys.argv[3] == "reference":
    reference = DriftReference.from_frame(ref)
    built = time.perf_counter() - t
    del ref
    t = time.perf_counter()
limits = DriftThresholds(alpha=0.05)
report = drift_report(reference, cur, thresholds=limits, workers=int(sys.argv[4]))
seconds = time.perf_counter() - t
print(json.dumps({"import_seconds": imported, "load_seconds": loaded, "seconds": seconds,
    "reference_seconds": built,
    "verdicts": {c.column: c.drifted for c in report.columns},
    "p_values": {c.column: c.p_value for c in report.columns}}))
"""

SCIPY = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
from scipy.stats import chi2_contingency, ks_2samp
imported = time.perf_counter() - t0
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
loaded = time.perf_counter() - t0 - imported
t = time.perf_counter()
p = {}
for name in ref.columns:
    if ref[name].dtype.kind == "f":
        p[name] = float(ks_2samp(ref[name], cur[name]).pvalue)
    else:
        table = pd.concat([ref[name].value_counts(), cur[name].value_counts()], axis=1).fillna(0)
        p[name] = float(chi2_contingency(table.T.to_numpy(), correction=False).pvalue)
seconds = time.perf_counter() - t
print(json.dumps({"import_seconds": imported, "load_seconds": loaded, "seconds": seconds,
    "verdicts": {k: v < 0.05 for k, v in p.items()}, "p_values": p}))
"""

FLOOR = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
imported = time.perf_counter() - t0
cur = pd.read_parquet(sys.argv[2])
loaded = time.perf_counter() - t0 - imported
t = time.perf_counter()
for name in cur.columns:
    if cur[name].dtype.kind == "f":
        np.sort(cur[name].to_numpy())
seconds = time.perf_counter() - t
print(json.dumps({"import_seconds": imported, "load_seconds": loaded, "seconds": seconds}))
"""

NANNYML = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import pandas as pd
import nannyml as nml
imported = time.perf_counter() - t0
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
loaded = time.perf_counter() - t0 - imported
categorical = [c for c in ref.columns if ref[c].dtype.kind != "f"]
t = time.perf_counter()
calc = nml.UnivariateDriftCalculator(
    column_names=list(ref.columns), treat_as_categorical=categorical,
    continuous_methods=["kolmogorov_smirnov"], categorical_methods=["chi2"], chunk_number=1)
calc.fit(ref)
result = calc.calculate(cur).filter(period="analysis").to_df()
seconds = time.perf_counter() - t
verdicts = {}
for name in ref.columns:
    method = "chi2" if name in categorical else "kolmogorov_smirnov"
    verdicts[name] = bool(result[(name, method, "alert")].iloc[-1])
print(json.dumps({"import_seconds": imported, "load_seconds": loaded, "seconds": seconds,
    "verdicts": verdicts}))
"""

EVIDENTLY = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
imported = time.perf_counter() - t0
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
loaded = time.perf_counter() - t0 - imported
t = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
snapshot.save_html(sys.argv[3])
seconds = time.perf_counter() - t
verdicts, methods = {}, {}
for metric in snapshot.dict()["metrics"]:
    config = metric.get("config", {})
    column = config.get("column")
    if column is None or "ValueDrift" not in metric.get("metric_name", ""):
        continue
    value = metric["value"]
    threshold = config.get("threshold")
    method = config.get("method") or ""
    methods[column] = method
    lower_is_drift = "p_value" in method
    verdicts[column] = bool(value < threshold if lower_is_drift else value >= threshold)
print(json.dumps({"import_seconds": imported, "load_seconds": loaded, "seconds": seconds,
    "verdicts": verdicts, "methods": methods}))
"""


def run_measured(python: Path | str, code: str, *args: str) -> dict:
    """Run ``code`` in a fresh process: its JSON answer, wall time, peak RSS (``wait4``)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [str(python), "-c", code, *args],
            stdout=out,
            stderr=err,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        text, problem = out.read(), err.read()
    if process.returncode != 0:
        return {
            "error": (problem.strip().splitlines() or ["failed"])[-1][:300],
            "wall_seconds": wall,
        }
    answer = json.loads(text.strip().splitlines()[-1])
    answer["wall_seconds"] = round(wall, 3)
    answer["peak_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--command-rows", type=int, default=300_000)
    parser.add_argument(
        "--tools", default="keel,keel-1-process,keel-reference,scipy,floor,nannyml,evidently"
    )
    args = parser.parse_args()
    tools = args.tools.split(",")
    work = Path(tempfile.mkdtemp(prefix="keel-bench-drift-"))
    results: dict = {
        "benchmark": "drift: Keel vs Evidently vs NannyML vs scipy loop vs np.sort floor",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "rows": args.rows,
        "columns": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL)},
        "shifted": SHIFTED,
        "tools": {},
    }
    try:
        print(f"generating {args.rows:,} rows × 20 columns (twice) ...", flush=True)
        reference = make_table(args.rows, seed=1, shift=False)
        current = make_table(args.rows, seed=2, shift=True)
        results["data_mb"] = round(
            (reference.memory_usage(deep=True).sum() + current.memory_usage(deep=True).sum())
            / 2**20,
            1,
        )
        ref_path, cur_path = work / "reference.parquet", work / "current.parquet"
        reference.to_parquet(ref_path, index=False)
        current.to_parquet(cur_path, index=False)
        del reference, current
        baseline = run_measured(
            sys.executable,
            "import json, pandas as pd, sys\n"
            "a, b = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])\n"
            'print(json.dumps({"seconds": 0}))',
            str(ref_path),
            str(cur_path),
        )
        results["loaded_only_peak_mb"] = baseline.get("peak_mb")
        cpus = str(os.cpu_count() or 1)
        plan = {
            "keel": (sys.executable, KEEL, ["frame", cpus]),
            "keel-1-process": (sys.executable, KEEL, ["frame", "1"]),
            "keel-reference": (sys.executable, KEEL, ["reference", cpus]),
            "scipy": (sys.executable, SCIPY, []),
            "floor": (sys.executable, FLOOR, []),
            "nannyml": ("nannyml", NANNYML, []),
            "evidently": ("evidently", EVIDENTLY, [str(work / "evidently.html")]),
        }
        for tool in tools:
            python, code, extra = plan[tool]
            if python in ("nannyml", "evidently"):
                python, why = tool_python(python)
                if python is None:
                    results["tools"][tool] = {"error": why}
                    print(f"{tool:15s} not measured: {why}", flush=True)
                    continue
            print(f"{tool:15s} ...", end=" ", flush=True)
            found = run_measured(python, code, str(ref_path), str(cur_path), *extra)
            results["tools"][tool] = found
            print({k: v for k, v in found.items() if k not in ("verdicts", "p_values")}, flush=True)
        _compare(results)
        if "evidently" in tools or "keel" in tools:
            _command_bench(results, work, args.command_rows, tools)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results" / "drift.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results.get("goals", {}), indent=2))
    print(f"wrote {out}")
    return 0


def _compare(results: dict) -> None:
    tools = results["tools"]
    truth = tools.get("scipy", {}).get("verdicts")
    for name, found in tools.items():
        if truth and "verdicts" in found:
            found["same_verdicts_as_scipy"] = found["verdicts"] == truth
            found["flagged"] = sorted(c for c, v in found["verdicts"].items() if v)
            found["shifted_found"] = sorted(c for c in SHIFTED if found["verdicts"].get(c))
        if truth and "p_values" in found and name != "scipy":
            found["p_values_equal_scipy"] = all(
                found["p_values"][c] == tools["scipy"]["p_values"][c]
                for c in NUMERIC
                if c in found["p_values"]
            )
    keel = tools.get("keel", {}).get("seconds")
    goals: dict = {}

    def ratio(other: str) -> float | None:
        seconds = tools.get(other, {}).get("seconds")
        return round(seconds / keel, 2) if seconds and keel else None

    if keel:
        goals["evidently_over_keel"] = {"value": ratio("evidently"), "goal": ">= 50"}
        goals["nannyml_over_keel"] = {"value": ratio("nannyml"), "goal": ">= 2"}
        floor = tools.get("floor", {}).get("seconds")
        goals["keel_over_floor"] = {
            "value": round(keel / floor, 2) if floor else None,
            "goal": "<= 3",
        }
        extra = tools["keel"].get("peak_mb", 0) - (results.get("loaded_only_peak_mb") or 0)
        goals["keel_extra_memory_mb"] = {
            "value": round(extra, 1),
            "goal": f"<= {2 * results['data_mb']:.0f} (2 x the data's {results['data_mb']} MB)",
        }
        goals["same_verdicts_as_scipy"] = {"value": tools["keel"].get("same_verdicts_as_scipy")}
        for goal in goals.values():
            value, target = goal["value"], goal.get("goal", "")
            if isinstance(value, bool) or value is None:
                goal["met"] = bool(value)
            elif target.startswith(">="):
                goal["met"] = value >= float(target.split()[1])
            else:
                goal["met"] = value <= float(target.split()[1])
    results["goals"] = goals


COMMAND_EVIDENTLY = """
import sys, warnings
warnings.simplefilter("ignore")
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref, cur = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])
Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).save_html(sys.argv[3])
"""


def _command_bench(results: dict, work: Path, rows: int, tools: list[str]) -> None:
    """The whole command, imports included, on CSV files of ``rows`` rows."""
    ref, cur = work / "ref.csv", work / "cur.csv"
    make_table(rows, seed=1, shift=False).to_csv(ref, index=False)
    make_table(rows, seed=2, shift=True).to_csv(cur, index=False)
    found: dict = {"rows": rows}
    keel = ROOT / ".venv" / "bin" / "keel"
    started = time.perf_counter()
    done = subprocess.run(
        [str(keel), "drift", str(ref), str(cur), "--json"], capture_output=True, text=True
    )
    found["keel_seconds"] = round(time.perf_counter() - started, 3)
    found["keel_exit_code"] = done.returncode
    if "evidently" in tools:
        python, why = tool_python("evidently")
        if python is not None:
            started = time.perf_counter()
            subprocess.run(
                [str(python), "-c", COMMAND_EVIDENTLY, str(ref), str(cur), str(work / "e.html")],
                capture_output=True,
                check=False,
            )
            found["evidently_seconds"] = round(time.perf_counter() - started, 3)
            found["evidently_over_keel"] = round(
                found["evidently_seconds"] / found["keel_seconds"], 1
            )
        else:
            found["evidently"] = why
    results["command"] = found
    if "evidently_over_keel" in found:
        results.setdefault("goals", {})["command_evidently_over_keel"] = {
            "value": found["evidently_over_keel"],
            "goal": ">= 20",
            "met": found["evidently_over_keel"] >= 20,
        }


if __name__ == "__main__":
    raise SystemExit(main())
