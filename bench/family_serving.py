"""Serving before and after the families refactor, in the same run: /recommend and /ask.

Issue 29 moved the recommender and retrieval apps onto the shared serving core
(``keel.serving.create_family_app``). This measures whether that cost anything: one
recommender (MovieLens, EASE) and one retrieval model (Keel's docs, BM25) are trained
once with the code before the refactor, then served alternately by the code before the refactor
(a ``git worktree`` of ``--before``, default ``e74c0fb``, on ``PYTHONPATH``) and by the
current code, and ``keel loadtest`` (3,000 requests, concurrency 8) measures each,
``--rounds`` times. Reported: median p50 / p95 / throughput per code and their ratio
(after / before).

Writes ``bench/results/family_serving.json``.
Run: ``.venv/bin/python bench/family_serving.py [--before REV] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "family_serving.json"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "examples" / "movielens"))


def _env(src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loadtest(root: Path, src: Path | None) -> dict:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", "--port", str(port)],
        cwd=root,
        env=_env(src),
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "keel",
                "loadtest",
                f"http://127.0.0.1:{port}",
                "--requests",
                "3000",
                "--concurrency",
                "8",
                "--json",
            ],
            cwd=root,
            env=_env(None),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(
                f"keel loadtest failed ({'before' if src else 'after'}): {done.stderr}"
            )
        return json.loads(done.stdout)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _projects(folder: Path) -> dict[str, Path]:
    import yaml
    from movielens import write_project
    from retrieval import _project

    rec = folder / "movielens"
    rec.mkdir()
    config = write_project(rec, users=300)
    loaded = yaml.safe_load(config.read_text())
    loaded.update({"candidates": ["ease"], "trials": 1})
    config.write_text(yaml.safe_dump(loaded, sort_keys=False))
    ask = _project(folder)
    text = (
        (ask / "keel.yaml")
        .read_text()
        .replace("candidates: [bm25, dense, hybrid]", "candidates: [bm25]")
    )
    (ask / "keel.yaml").write_text(text)
    return {"recommendation": rec, "retrieval": ask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="e74c0fb")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = folder / "before"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(old), args.before],
            cwd=ROOT,
            check=True,
        )
        try:
            results = {}
            for family, root in _projects(folder).items():
                # trained by the code before: both codes load its package (the current
                # code reads older packages; an older Keel cannot read a newer retrieval
                # package, whose answer settings hold min_terms)
                done = subprocess.run(
                    [sys.executable, "-m", "keel", "run", "--json"],
                    cwd=root,
                    env=_env(old / "src"),
                    capture_output=True,
                    text=True,
                )
                if done.returncode not in (0, 1):
                    raise SystemExit(done.stderr[-2000:])
                runs: dict[str, list[dict]] = {"before": [], "after": []}
                for _ in range(args.rounds):  # alternate: drift of the machine hits both
                    runs["before"].append(_loadtest(root, old / "src"))
                    runs["after"].append(_loadtest(root, None))
                summary = {}
                for code, found in runs.items():
                    summary[code] = {
                        k: statistics.median(r[k] for r in found)
                        for k in ("p50_ms", "p95_ms", "throughput", "error_rate")
                    }
                summary["ratio_after_over_before"] = {
                    k: round(summary["after"][k] / summary["before"][k], 3)
                    for k in ("p50_ms", "p95_ms", "throughput")
                }
                results[family] = summary
                print(family, json.dumps(summary), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)
            shutil.rmtree(old, ignore_errors=True)
    OUT.write_text(
        json.dumps(
            {
                "before": args.before,
                "rounds": args.rounds,
                "requests": 3000,
                "concurrency": 8,
                "families": results,
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
