"""Serving benchmark: `keel serve` against the floor, a bare FastAPI and `mlflow models serve`.

All in one run, on loopback, one uvicorn worker per server, the same registered model
(the demo's UCI Adult pipeline with LightGBM, trained by `keel run` here):

* in-process: Keel's answer for one row (compiled path) and the sklearn pipeline's
  ``predict_proba`` for one row — the floor under any server;
* a bare FastAPI endpoint returning a constant — the HTTP floor;
* `mlflow models serve` of the same version;
* `keel serve` with its defaults (schema checks, prediction log, metrics).

Single-row and 100-row requests at concurrency 1, 8 and 32, each cell for a fixed
time, servers interleaved cell by cell so machine noise hits all alike. Reports p50 and
p99 latency and throughput, and the goals of the serving issue: Keel's single-row
throughput ≥ 10× MLflow's at every concurrency and ≥ 50 % of the bare FastAPI floor,
and Keel's p50 at concurrency 1 within 1.5× (HTTP floor p50 + in-process predict).
Writes bench/results/serving.json.

Run: `.venv/bin/python bench/serving.py [--seconds 4]` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "adult"))
from adult import load_adult  # noqa: E402

CONCURRENCY = (1, 8, 32)
BATCHES = (1, 100)

BARE_APP = textwrap.dedent(
    """
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        await request.body()
        return {"predictions": [0]}

    @app.get("/health")
    def health():
        return {"status": "ok"}
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, path: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on {port} exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"port {port} not ready after {seconds} s")


def drive(port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """Send POSTs from ``concurrency`` keep-alive clients for ``seconds``; measure."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)]
            i += concurrency
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies[k].append(time.perf_counter() - started)
            failures[k] += not ok
        conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    ms = np.array([x for part in latencies for x in part]) * 1000
    return {
        "requests": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "throughput": round(len(ms) / elapsed, 1),
        "errors": int(sum(failures)),
    }


def in_process(tracking: str, version: str, records: list[dict]) -> dict:
    """One-row answer times without HTTP: Keel's compiled path and the raw pipeline."""
    import pandas as pd

    from keel.families.tabular.serving.served import Served
    from keel.registry import load_package

    package = load_package(f"bench-income/{version}", tracking)
    served = Served(package)
    frame = pd.DataFrame(records[:1])[package.schema.feature_names]

    def timed(fn, n: int = 2000) -> float:
        for _ in range(50):
            fn()
        started = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - started) / n * 1000

    return {
        "compiled_path": served.fast is not None,
        "keel_answer_one_row_ms": round(timed(lambda: served.answer(records[:1])), 4),
        "pipeline_predict_proba_one_row_ms": round(
            timed(lambda: package.model.predict_proba(frame), 300), 4
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per cell")
    args = parser.parse_args()

    train, test = load_adult()
    work = Path(tempfile.mkdtemp(prefix="keel-bench-serving-"))
    train.to_csv(work / "adult.csv", index=False)
    (work / "keel.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "bench-income",
                "data": "adult.csv",
                "target": "income",
                "ignore_columns": ["fnlwgt"],
                "candidates": ["lightgbm"],
                "budget": 0,
            }
        )
    )
    (work / "bare_app.py").write_text(BARE_APP)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
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
    records = json.loads(
        test.drop(columns=["income"]).dropna().head(2000).to_json(orient="records")
    )
    floor = in_process(tracking, version, records)
    print(f"in-process: {floor}", flush=True)

    ports = {name: free_port() for name in ("keel", "mlflow", "bare")}
    bin_dir = Path(sys.executable).parent
    commands = {
        "keel": [sys.executable, "-m", "keel", "serve", "--port", str(ports["keel"])],
        "mlflow": [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/bench-income/{version}",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(ports["mlflow"]),
            "-w",
            "1",
        ],
        "bare": [
            str(bin_dir / "uvicorn"),
            "bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["bare"]),
            "--log-level",
            "warning",
        ],
    }
    paths = {
        "keel": ("/predict", "instances", "/ready"),
        "mlflow": ("/invocations", "dataframe_records", "/health"),
        "bare": ("/predict", "instances", "/health"),
    }
    logs = {n: open(work / f"{n}.log", "w") for n in commands}  # noqa: SIM115
    servers = {
        n: subprocess.Popen(
            cmd,
            cwd=work,
            env=env | ({"MLFLOW_TRACKING_URI": tracking} if n == "mlflow" else {}),
            stdout=logs[n],
            stderr=subprocess.STDOUT,
        )
        for n, cmd in commands.items()
    }
    cells: dict[str, dict] = {n: {} for n in commands}
    try:
        for name, process in servers.items():
            wait_ready(ports[name], paths[name][2], process)
        for rows in BATCHES:
            for concurrency in CONCURRENCY:
                for name in commands:
                    path, key, _ = paths[name]
                    bodies = [
                        json.dumps({key: records[i : i + rows]}).encode()
                        for i in range(0, min(len(records), 64 * rows), rows)
                    ]
                    drive(ports[name], path, bodies, concurrency, 0.5)  # warm-up
                    cell = drive(ports[name], path, bodies, concurrency, args.seconds)
                    cells[name][f"rows{rows}_c{concurrency}"] = cell
                    print(f"{name:6} rows={rows:3} c={concurrency:2} {cell}", flush=True)
    finally:
        for process in servers.values():
            process.terminate()
            process.wait(timeout=60)
        for log in logs.values():
            log.close()

    goals = {}
    for c in CONCURRENCY:
        cell = f"rows1_c{c}"
        keel, mlflow, bare = (cells[n][cell]["throughput"] for n in ("keel", "mlflow", "bare"))
        goals[f"c{c}_keel_over_mlflow"] = {"value": round(keel / mlflow, 2), "goal": ">= 10"}
        goals[f"c{c}_keel_over_bare"] = {"value": round(keel / bare, 3), "goal": ">= 0.5"}
    budget = 1.5 * (cells["bare"]["rows1_c1"]["p50_ms"] + floor["keel_answer_one_row_ms"])
    goals["c1_keel_p50_ms"] = {
        "value": cells["keel"]["rows1_c1"]["p50_ms"],
        "goal": f"<= {budget:.3f} (1.5 x (bare p50 + in-process answer))",
    }
    for goal in goals.values():
        number = float(str(goal["value"]))
        bound = float(goal["goal"].split()[1])
        goal["met"] = number >= bound if goal["goal"].startswith(">=") else number <= bound
    report = {
        "benchmark": "serving: keel serve vs bare FastAPI vs mlflow models serve, same model",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": f"models:/bench-income/{version} (LightGBM pipeline, UCI Adult)",
        "seconds_per_cell": args.seconds,
        "client": "Python threads with keep-alive http.client connections, same process",
        "in_process": floor,
        "cells": cells,
        "goals": goals,
    }
    out = ROOT / "bench" / "results" / "serving.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(goals, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
