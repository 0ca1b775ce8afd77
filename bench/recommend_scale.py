"""The recommender's scale envelope: `keel run` at 1/10, 1/3 and full MovieLens-20M shape.

For each size, seeded synthetic interactions (`keel.families.recommendation.synthetic`:
Zipf popularity, log-normal activity, items appearing and fading over time, genre
tastes) are written as Parquet with users and items tables, and a new user's project
runs `keel run --json` with `candidates: [item_knn, als]` and `budget: 600` on 2 cores.
Reported per size: wall seconds, the process's peak memory (the kernel's high-water
mark of the `keel run` child) and every stage's seconds and peak memory
(`keel run --json`: `stages`), the NDCG@10 of every model (baselines too) on the test period,
and — on the largest size — the p95 of `POST /recommend` at concurrency 8 (`keel
loadtest`, 3,000 requests) on the registered package.

Run: `.venv/bin/python bench/recommend_scale.py [--scales 0.1 0.333 1] [--budget 600]`;
writes bench/results/recommend_scale.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from keel.families.recommendation.synthetic import generate_interactions, ml20m_shape

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}


def write_project(folder: Path, scale: float, budget: int, seed: int) -> dict:
    """Generate the data at ``scale``, write it as Parquet and a keel.yaml."""
    started = time.perf_counter()
    data = generate_interactions(**ml20m_shape(scale), seed=seed)
    seconds = time.perf_counter() - started
    (folder / "data").mkdir(parents=True, exist_ok=True)
    data.interactions.to_parquet(folder / "data" / "ratings.parquet", index=False)
    data.users.to_parquet(folder / "data" / "users.parquet", index=False)
    data.items.to_parquet(folder / "data" / "items.parquet", index=False)
    config = {
        "name": "scale",
        "task": "recommendation",
        "data": "data/ratings.parquet",
        "users": "data/users.parquet",
        "items": "data/items.parquet",
        "user_column": "user_id",
        "item_column": "item_id",
        "time_column": "timestamp",
        "rating_column": "rating",
        "relevant_from": 4,
        "item_attribute": "genre",
        "sensitive_features": ["age_band"],
        "k": [5, 10, 20],
        "split": {"strategy": "global_time", "validation": 0.1, "test": 0.1},
        "candidates": ["item_knn", "als"],
        "budget": budget,
        "card": {
            "owners": ["bench"],
            "intended_use": "Scale envelope of the recommendation family (synthetic data).",
        },
    }
    (folder / "keel.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return {"generate_seconds": round(seconds, 1), **data.shape}


def run(folder: Path) -> dict:
    """`keel run --json` in ``folder``: wall time, peak memory, stages and metrics."""
    started = time.perf_counter()
    with open(folder / "run.out", "w") as stdout, open(folder / "run.err", "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "keel", "run", "--json"],
            cwd=folder,
            env=_env(),
            stdout=stdout,
            stderr=stderr,
        )
        # wait4: this child's own peak resident memory (not the largest child so far)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    peak_mb = usage.ru_maxrss / 1024
    if child.returncode != 0:
        err = (folder / "run.err").read_text()[-2000:]
        return {"failed": err, "wall_seconds": round(wall, 1), "peak_mb": round(peak_mb)}
    out = json.loads((folder / "run.out").read_text())
    return {
        "wall_seconds": round(wall, 1),
        "peak_mb": round(peak_mb),
        "chosen": out["model"]["candidate"],
        "ndcg_at_10": {c["name"]: c["test"].get("ndcg_at_10") for c in out["candidates"]},
        "skipped": out.get("skipped", []),
        "tuning": out.get("tuning", {}),
        "stages": {
            s["name"]: {"seconds": round(s["seconds"], 1), "peak_mb": s.get("peak_mb")}
            for s in out["stages"]
        },
    }


def serve_p95(folder: Path, requests: int = 3000) -> dict:
    """p50/p95 of POST /recommend at concurrency 8 on the registered champion."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", "--port", str(port)],
        cwd=folder,
        env=_env(),
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        done = subprocess.run(
            [
                *(sys.executable, "-m", "keel", "loadtest", f"http://127.0.0.1:{port}"),
                *("--requests", str(requests), "--concurrency", "8", "--seconds", "300", "--json"),
            ],
            cwd=folder,
            env=_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)
    finally:
        server.terminate()
        server.wait(timeout=60)


def table(results: list[dict]) -> str:
    """The envelope as a markdown table."""
    stage_names = list(next((r["run"]["stages"] for r in results if "stages" in r["run"]), {}))
    head = ["scale", "interactions", "users", "items", "wall s", "peak MB"]
    head += [f"{s} s / MB" for s in stage_names] + ["NDCG@10 per model", "p95 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        run_ = r["run"]
        if "failed" in run_:
            lines.append(f"| {r['scale']} | failed after {run_['wall_seconds']} s |")
            continue
        cells = [
            str(r["scale"]),
            f"{r['data']['interactions']:,}",
            f"{r['data']['users']:,}",
            f"{r['data']['items']:,}",
            str(run_["wall_seconds"]),
            f"{run_['peak_mb']:,}",
        ]
        for name in stage_names:
            s = run_["stages"].get(name, {})
            cells.append(f"{s.get('seconds', '')} / {s.get('peak_mb') or ''}")
        cells.append(
            ", ".join(f"{k} {v:.4f}" for k, v in run_["ndcg_at_10"].items() if v is not None)
        )
        p95 = r.get("serving", {}).get("p95_ms")
        cells.append("" if p95 is None else f"{p95:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.1, 1 / 3, 1.0])
    parser.add_argument("--budget", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/recommend_scale.json")
    args = parser.parse_args()
    results = []
    for scale in args.scales:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            data = write_project(folder, scale, args.budget, args.seed)
            print(f"scale {scale:.3g}: {data}", file=sys.stderr, flush=True)
            result = {"scale": round(scale, 3), "data": data, "run": run(folder)}
            if scale == max(args.scales) and "failed" not in result["run"]:
                result["serving"] = serve_p95(folder, args.requests)
            results.append(result)
            print(json.dumps(result["run"])[:600], file=sys.stderr, flush=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "budget": args.budget, "sizes": results}))
    print(table(results))


if __name__ == "__main__":
    main()
