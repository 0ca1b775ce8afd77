"""A/B-test benchmark: calibration against GrowthBook's gbstats, and the serving overhead.

Part 1 — calibration, in one run, on the same simulated counts:

* a conversion metric: baseline 0.10, minimum detectable effect +0.01 (absolute),
  alpha 0.05, power 0.8; the planned units per arm from `keel experiment design`;
  units arrive evenly over 14 days and the experiment is looked at once a day;
* ``--simulations`` A/A runs (no effect) and as many A/B runs (effect = the MDE);
* Keel: the fixed-horizon test at the planned sample (false-positive rate, power), the
  same test read every day and stopped at the first p < alpha (what "peeking" does),
  and the always-valid mSPRT p-value read every day;
* gbstats 0.8 (GrowthBook's engine, in its own venv): its fixed two-sided test at the
  planned sample and its sequential test (the Waudby-Smith et al. confidence sequence,
  tuned to the planned sample) read every day;
* the whole decision (``keel.evaluation._experiments.decide`` on per-unit tables, SRM and
  Holm included) on ``--decisions`` A/A runs of 4,000 units: how often it says ship.

Part 2 — serving overhead: `keel serve` (one worker, loopback) answering one-row
requests that carry a unit, without and then with a running experiment (cells
interleaved so machine noise hits both alike); requests/s and p50/p99.

Writes bench/results/experiments.json. Run: `.venv/bin/python bench/experiments.py`
(about 3 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "examples" / "adult"))
from _venvs import tool_python  # noqa: E402
from serving import drive, free_port, wait_ready  # noqa: E402

BASELINE, MDE, ALPHA, POWER, DAYS = 0.10, 0.01, 0.05, 0.8, 14

GBSTATS_SCRIPT = """
import json, sys
from gbstats.frequentist.tests import (
    FrequentistConfig, SequentialConfig, SequentialTwoSidedTTest, TwoSidedTTest,
)
from gbstats.models.statistics import ProportionStatistic

data = json.load(sys.stdin)
tuning = data["tuning"]
fixed_cfg = FrequentistConfig(difference_type="absolute", alpha=data["alpha"])
seq_cfg = SequentialConfig(
    difference_type="absolute", alpha=data["alpha"], sequential_tuning_parameter=tuning
)
out = {}
for kind, runs in data["runs"].items():
    fixed, sequential = [], []
    for looks in runs:
        ps = []
        for xa, na, xb, nb in looks:
            a, b = ProportionStatistic(n=na, sum=xa), ProportionStatistic(n=nb, sum=xb)
            ps.append(SequentialTwoSidedTTest(a, b, seq_cfg).compute_result().p_value)
        xa, na, xb, nb = looks[-1]
        a, b = ProportionStatistic(n=na, sum=xa), ProportionStatistic(n=nb, sum=xb)
        fixed.append(TwoSidedTTest(a, b, fixed_cfg).compute_result().p_value)
        sequential.append(min(ps))
    out[kind] = {"fixed": fixed, "sequential": sequential}
json.dump(out, sys.stdout)
"""


def simulate(runs: int, per_arm: int, effect: float, seed: int) -> np.ndarray:
    """Cumulative (x_control, n_control, x_treatment, n_treatment) per run and daily look."""
    rng = np.random.default_rng(seed)
    daily = np.diff(np.linspace(0, per_arm, DAYS + 1).round().astype(int))
    x_c = rng.binomial(np.broadcast_to(daily, (runs, DAYS)), BASELINE).cumsum(axis=1)
    x_t = rng.binomial(np.broadcast_to(daily, (runs, DAYS)), BASELINE + effect).cumsum(axis=1)
    n = np.broadcast_to(daily.cumsum(), (runs, DAYS))
    return np.stack([x_c, n, x_t, n], axis=-1)


def keel_tests(counts: np.ndarray) -> dict[str, list[float]]:
    """Keel's fixed p at the last look, min over looks of fixed p and of mSPRT p."""
    from keel.evaluation._experiments import msprt_p_value, two_proportions

    fixed, peeking, sequential = [], [], []
    tau2 = (BASELINE / 10) ** 2  # the default: a 10 % relative effect scale
    for looks in counts:
        ps, seq = [], []
        for x_c, n_c, x_t, n_t in looks:
            effect = two_proportions("conversion", int(x_c), int(n_c), int(x_t), int(n_t), ALPHA)
            variance = (
                effect.control * (1 - effect.control) / n_c
                + effect.treatment * (1 - effect.treatment) / n_t
            )
            ps.append(effect.p_value)
            seq.append(msprt_p_value(effect.absolute, variance, tau2))
        fixed.append(ps[-1])
        peeking.append(min(ps))
        sequential.append(min(seq))
    return {"fixed": fixed, "peeking": peeking, "sequential": sequential}


def rate(p_values: list[float]) -> float:
    return round(float(np.mean(np.asarray(p_values) < ALPHA)), 4)


def decisions(runs: int, units: int, seed: int) -> dict[str, float]:
    """How often the whole decision says ship on A/A data (SRM, Holm, guardrail)."""
    import pandas as pd

    from keel.evaluation._experiments import assign, decide

    rng = np.random.default_rng(seed)
    shipped = srm = 0
    started = time.perf_counter()
    for run in range(runs):
        ids = [f"u{i}" for i in range(units)]
        arms = [assign(u, f"aa-{run}", 0.5) for u in ids]
        frame = pd.DataFrame(
            {
                "unit": ids,
                "arm": arms,
                "conversion": (rng.random(units) < BASELINE).astype(float),
                "latency_ms": rng.normal(10, 1, units),
            }
        )
        verdict = decide(
            frame,
            ["conversion"],
            guardrails={"latency_ms": 1.0},
            lower_is_better=("latency_ms",),
            planned_per_arm=units // 2 - 100,
        )
        shipped += verdict.decision == "ship"
        srm += bool(verdict.srm["flagged"])
    return {
        "runs": runs,
        "units": units,
        "ship_rate": round(shipped / runs, 4),
        "srm_flag_rate": round(srm / runs, 4),
        "seconds_per_decision": round((time.perf_counter() - started) / runs, 4),
    }


def calibration(simulations: int, decision_runs: int) -> dict:
    from keel.evaluation._experiments import design

    plan = design("proportion", BASELINE, MDE, alpha=ALPHA, power=POWER)
    per_arm = plan.per_arm
    print(f"planned units per arm: {per_arm:,}", flush=True)
    runs = {
        "aa": simulate(simulations, per_arm, 0.0, 1),
        "ab": simulate(simulations, per_arm, MDE, 2),
    }
    started = time.perf_counter()
    keel = {kind: keel_tests(c) for kind, c in runs.items()}
    keel_seconds = time.perf_counter() - started
    result: dict = {
        "setting": {
            "baseline": BASELINE,
            "mde": MDE,
            "alpha": ALPHA,
            "power": POWER,
            "looks": DAYS,
            "per_arm": per_arm,
            "simulations": simulations,
        },
        "keel": {
            "false_positive_rate": {
                "fixed_at_planned_sample": rate(keel["aa"]["fixed"]),
                "fixed_test_read_daily_peeking": rate(keel["aa"]["peeking"]),
                "msprt_read_daily": rate(keel["aa"]["sequential"]),
            },
            "power": {
                "fixed_at_planned_sample": rate(keel["ab"]["fixed"]),
                "msprt_read_daily": rate(keel["ab"]["sequential"]),
            },
            "seconds": round(keel_seconds, 2),
        },
    }
    python, why = tool_python("gbstats")
    if python is None:
        result["gbstats"] = {"skipped": why}
    else:
        payload = {
            "alpha": ALPHA,
            "tuning": 2 * per_arm,
            "runs": {k: c.astype(int).tolist() for k, c in runs.items()},
        }
        started = time.perf_counter()
        done = subprocess.run(
            [str(python), "-c", GBSTATS_SCRIPT],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            check=True,
        )
        gb = json.loads(done.stdout)
        result["gbstats"] = {
            "version": "0.8.0",
            "false_positive_rate": {
                "fixed_at_planned_sample": rate(gb["aa"]["fixed"]),
                "sequential_read_daily": rate(gb["aa"]["sequential"]),
            },
            "power": {
                "fixed_at_planned_sample": rate(gb["ab"]["fixed"]),
                "sequential_read_daily": rate(gb["ab"]["sequential"]),
            },
            "seconds_with_process_start": round(time.perf_counter() - started, 2),
            # the fixed tests are the same z-test: their p-values must agree
            "max_fixed_p_difference_vs_keel": round(
                float(
                    np.max(np.abs(np.asarray(gb["aa"]["fixed"]) - np.asarray(keel["aa"]["fixed"])))
                ),
                6,
            ),
        }
    result["keel_decision_on_a_a"] = decisions(decision_runs, 4000, 3)
    return result


def post(port: int, body: bytes) -> bytes:
    """One POST /predict on loopback."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
    answer = conn.getresponse().read()
    conn.close()
    return answer


def assign_cost() -> float:
    """Microseconds for one unit's arm (the work routing adds to a request)."""
    from keel.monitoring._experiments import Experiment

    e = Experiment("x", "m", "1", "2", 50.0, "user_id", "x:0123456789abcdef", "running", 0.0)
    units = [f"user-{i}" for i in range(100_000)]
    started = time.perf_counter()
    for unit in units:
        e.arm_of(unit)
    return round((time.perf_counter() - started) / len(units) * 1e6, 3)


def overhead(seconds: float) -> dict:
    """Requests/s of `keel serve` with and without a running experiment, interleaved."""
    from adult import load_adult

    train, test = load_adult()
    work = Path(tempfile.mkdtemp(prefix="keel-bench-ab-"))
    train.to_csv(work / "adult.csv", index=False)
    config = {
        "name": "bench-ab",
        "data": "adult.csv",
        "target": "income",
        "ignore_columns": ["fnlwgt"],
        "budget": 0,
    }
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
    for seed in (42, 7):  # two versions to compare
        (work / "keel.yaml").write_text(yaml.safe_dump(config | {"seed": seed}))
        done = subprocess.run(
            [sys.executable, "-m", "keel", "run", "--json"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr)
    history = subprocess.run(
        [sys.executable, "-m", "keel", "history", "bench-ab", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    champion = json.loads(history.stdout)["aliases"]["champion"]
    challenger = "2" if champion == "1" else "1"
    records = json.loads(test.drop(columns=["income"]).dropna().head(500).to_json(orient="records"))
    bodies = [
        json.dumps({"instances": [r], "unit": f"user-{i}"}).encode() for i, r in enumerate(records)
    ]
    port = free_port()
    log = open(work / "serve.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", "--port", str(port), "--poll-seconds", "0.5"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    cells: dict[str, list[dict]] = {"without": [], "with": []}
    try:
        wait_ready(port, "/ready", server)
        drive(port, "/predict", bodies, 8, 1.0)  # warm-up
        for rnd in range(3):
            for arm in ("without", "with"):
                command = (
                    ["start", f"overhead-{rnd}", "--challenger", challenger, "--metric", "x"]
                    if arm == "with"
                    else None
                )
                if command:
                    subprocess.run(
                        [sys.executable, "-m", "keel", "experiment", *command],
                        cwd=work,
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                    time.sleep(2.0)  # the server's poll picks it up
                    probe = json.loads(post(port, bodies[0]))
                    if "experiment" not in probe:
                        raise SystemExit("the server did not pick up the experiment")
                cells[arm].append(drive(port, "/predict", bodies, 8, seconds))
                if command:
                    subprocess.run(
                        [sys.executable, "-m", "keel", "experiment", "stop", f"overhead-{rnd}"],
                        cwd=work,
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                    time.sleep(2.0)
    finally:
        server.terminate()
        server.wait(timeout=60)
    summary = {
        arm: {
            "requests_per_second": round(float(np.median([c["throughput"] for c in cs])), 1),
            "p50_ms": round(float(np.median([c["p50_ms"] for c in cs])), 3),
            "p99_ms": round(float(np.median([c["p99_ms"] for c in cs])), 3),
            "errors": sum(c["errors"] for c in cs),
            "cells": cs,
        }
        for arm, cs in cells.items()
    }
    summary["assign_microseconds"] = assign_cost()
    summary["ratio_with_over_without"] = round(
        summary["with"]["requests_per_second"] / summary["without"]["requests_per_second"], 3
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per serving cell")
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "calibration": calibration(args.simulations, args.decisions),
    }
    print(json.dumps(result["calibration"], indent=2), flush=True)
    if not args.skip_serving:
        result["serving_overhead"] = overhead(args.seconds)
        print(json.dumps({k: v for k, v in result["serving_overhead"].items()}, indent=2))
    out = ROOT / "bench" / "results" / "experiments.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
