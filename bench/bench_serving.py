"""Serving benchmark: `keel serve` against `mlflow models serve`, same model, same run.

A user who has a model in the MLflow registry would otherwise serve it with
`mlflow models serve`. Both servers here serve the same registered version (UCI Adult,
LightGBM pipeline), one uvicorn worker each, on loopback; the client sends:

* single-row requests one after another (latency p50 / p95), and
* batches of 1,000 rows (throughput in rows per second),

alternating between the two servers so that noise from the machine hits both alike.
Results go to bench/results/serving.json with the ratios (Keel / MLflow for latency,
MLflow / Keel for time per row; > 1 means Keel is faster for the throughput ratio).

Run with `make bench` (or `.venv/bin/python bench/bench_serving.py [--rows N]`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "adult"))
from adult import load_adult  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {seconds} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=300, help="single-row requests per server")
    parser.add_argument("--batches", type=int, default=10, help="1,000-row batches per server")
    args = parser.parse_args()

    train, test = load_adult()
    work = Path(tempfile.mkdtemp(prefix="keel-bench-"))
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
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
    # `mlflow models serve` starts `uvicorn` by name: the venv's bin must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, "-m", "keel", "run", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    tracking = result["tracking_uri"]
    version = result["model"]["version"]

    keel_port, mlflow_port = free_port(), free_port()
    logs = [open(work / f"{n}.log", "w") for n in ("keel", "mlflow")]  # noqa: SIM115
    keel = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", "--port", str(keel_port)],
        cwd=work,
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    mlflow = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/bench-income/{version}",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(mlflow_port),
            "-w",
            "1",
        ],
        cwd=work,
        env=env | {"MLFLOW_TRACKING_URI": tracking},
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(f"http://127.0.0.1:{keel_port}/health", keel)
        wait_ready(f"http://127.0.0.1:{mlflow_port}/health", mlflow)
        features = test.drop(columns=["income", "fnlwgt"])
        records = json.loads(features.to_json(orient="records"))
        endpoints = {
            "keel": (f"http://127.0.0.1:{keel_port}/predict", "instances"),
            "mlflow": (f"http://127.0.0.1:{mlflow_port}/invocations", "dataframe_records"),
        }
        latency: dict[str, list[float]] = {"keel": [], "mlflow": []}
        batch: dict[str, list[float]] = {"keel": [], "mlflow": []}
        answers: dict[str, list] = {"keel": [], "mlflow": []}
        with httpx.Client(timeout=60) as client:
            for url, key in endpoints.values():  # warm-up
                for row in records[:20]:
                    client.post(url, json={key: [row]}).raise_for_status()
            for i in range(args.single):
                for name, (url, key) in endpoints.items():
                    started = time.perf_counter()
                    answer = client.post(url, json={key: [records[i % len(records)]]})
                    latency[name].append(time.perf_counter() - started)
                    answer.raise_for_status()
            for b in range(args.batches):
                chunk = records[(b * 1000) % 15000 : (b * 1000) % 15000 + 1000]
                for name, (url, key) in endpoints.items():
                    started = time.perf_counter()
                    answer = client.post(url, json={key: chunk})
                    batch[name].append(time.perf_counter() - started)
                    answer.raise_for_status()
                    body = answer.json()
                    answers[name].append(body["predictions"])
        agree = all(a == b for a, b in zip(answers["keel"], answers["mlflow"], strict=True))
    finally:
        for process in (keel, mlflow):
            process.terminate()
            process.wait(timeout=30)
        for log in logs:
            log.close()

    summary = {}
    for name in ("keel", "mlflow"):
        summary[name] = {
            "single_row_p50_ms": round(1000 * statistics.median(latency[name]), 2),
            "single_row_p95_ms": round(1000 * percentile(latency[name], 0.95), 2),
            "batch_1000_median_ms": round(1000 * statistics.median(batch[name]), 1),
            "rows_per_second": round(1000 / statistics.median(batch[name])),
        }
    ratios = {
        "p50_latency_mlflow_over_keel": round(
            summary["mlflow"]["single_row_p50_ms"] / summary["keel"]["single_row_p50_ms"], 2
        ),
        "throughput_keel_over_mlflow": round(
            summary["keel"]["rows_per_second"] / summary["mlflow"]["rows_per_second"], 2
        ),
    }
    report = {
        "benchmark": "serving: keel serve vs mlflow models serve (same registered model)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": f"models:/bench-income/{version} (LightGBM pipeline, UCI Adult)",
        "single_requests": args.single,
        "batches": args.batches,
        "predictions_agree": agree,
        "results": summary,
        "ratios": ratios,
        "note": "Keel checks every field against the schema; MLflow enforces the signature.",
    }
    out = ROOT / "bench" / "results" / "serving.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
