"""Recommendation benchmark on MovieLens 100k: quality, evaluation speed, serving, ANN.

1. **Quality.** `keel run` (tuned item_knn, EASE, ALS, BPR; `--trials` each) against
   what a user would write by hand on the same global-time split: EASE in NumPy,
   ItemKNN (`implicit`'s CosineRecommender) and iALS (`implicit`), each tuned on a small
   grid on the validation period, all scored with Keel's metric code (equal to
   trec_eval's, see tests/unit/test_ranking_metrics.py) over the full catalogue.
2. **Evaluation speed.** Keel's `evaluate_ranking` of every test user (chunks, seen items
   masked, top-K with reproducible ties, full-ranking MRR, warm/cold) against the floor:
   one matrix product for all users and one `argpartition`.
3. **Serving.** p95 of `POST /recommend` at concurrency 8 (`keel loadtest`, 3,000
   requests) on the trained model.
4. **100,000 items.** Exact top-10 (one matrix product + argpartition) against a faiss
   HNSW inner-product index, with the ANN list's recall of the exact one. MovieLens has
   1,682 items, so the 100,000 item vectors are drawn from a Gaussian fitted to the
   trained ALS item factors (mean and covariance): synthetic, with the real model's
   geometry. faiss is a bench-only dependency (`pip install faiss-cpu==1.15.1`).

Run: `.venv/bin/python bench/recommend.py [--trials 8]`; writes bench/results/recommend.json.
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
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "movielens"))

from movielens import write_project  # noqa: E402

from keel.evaluation._ranking import first_relevant_rank, rank_metrics, top_k  # noqa: E402
from keel.families.recommendation.data import prepare_interactions, split_interactions  # noqa: E402
from keel.families.recommendation.task import evaluate_ranking  # noqa: E402
from keel.families.recommendation.train import fit_model, interaction_matrix  # noqa: E402

KS = (5, 10, 20)


def _keel(folder: Path, *args: str, capture: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        cwd=folder,
        env=env,
        capture_output=capture,
        text=True,
        check=True,
    )


def _metrics(scores: np.ndarray, seen: sp.csr_matrix, held: pd.DataFrame, users, items):
    """Keel's per-user metrics of a dense score matrix (rows ``users``, cols ``items``)."""
    relevant = held[held["relevant"]].groupby("user")["item"].agg(list)
    row_of = pd.Index(users).get_indexer(relevant.index)
    col = pd.Index(items)
    out: dict[str, list] = {}
    for start in range(0, len(relevant), 512):
        part = relevant.iloc[start : start + 512]
        rows = row_of[start : start + 512]
        known = rows >= 0
        block = np.zeros((len(part), len(items)))
        allowed = np.ones((len(part), len(items)), dtype=bool)
        block[known] = scores[rows[known]]
        allowed[known] = seen[rows[known]].toarray() == 0
        # unknown users: the popularity fallback, as Keel serves them
        block[~known] = np.asarray(seen.sum(0)).ravel()
        wanted = [col.get_indexer(i) for i in part]
        n_rel = np.array([len(w) for w in wanted])
        wanted = [w[w >= 0] for w in wanted]
        top = top_k(block, max(KS), allowed)
        hits = np.array([np.isin(t, w) & (t >= 0) for t, w in zip(top, wanted, strict=True)])
        first = first_relevant_rank(block, wanted, allowed)
        for name, values in rank_metrics(hits, n_rel, first, KS).items():
            out.setdefault(name, []).append(values)
    return {k: float(np.concatenate(v).mean()) for k, v in out.items()}


def _direct(splits) -> dict[str, dict]:
    """EASE (NumPy), ItemKNN and iALS (implicit), each tuned on validation by hand."""
    import warnings

    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import CosineRecommender
    from threadpoolctl import threadpool_limits

    warnings.filterwarnings("ignore")

    def matrices(frame):
        users = np.sort(frame["user"].unique())
        items = np.sort(frame["item"].unique())
        return users, items, interaction_matrix(frame, users, items)

    def ease(x, l2):
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += l2
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))
        np.fill_diagonal(b, 0.0)
        return np.asarray(x @ b)

    def knn(x, k):
        model = CosineRecommender(K=k, num_threads=1)
        model.fit(x, show_progress=False)
        return (x @ model.similarity).toarray()

    def ials(x, f, reg, alpha):
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=f,
                regularization=reg,
                alpha=alpha,
                iterations=15,
                random_state=0,
                num_threads=1,
                calculate_training_loss=False,
            )
            model.fit(x, show_progress=False)
        return model.user_factors @ model.item_factors.T

    grids = {
        "ease (numpy)": (ease, [{"l2": v} for v in (50, 200, 500, 1000, 3000)]),
        "item_knn (implicit)": (knn, [{"k": v} for v in (20, 50, 100, 200, 400)]),
        "ials (implicit)": (
            ials,
            [
                {"f": f, "reg": r, "alpha": a}
                for f in (32, 64, 128)
                for r in (0.01, 0.1)
                for a in (1.0, 10.0)
            ],
        ),
    }
    out = {}
    users_t, items_t, x_train = matrices(splits.train)
    users_f, items_f, x_fit = matrices(splits.fit)
    for name, (fit, grid) in grids.items():
        started = time.perf_counter()
        scored = [
            (
                _metrics(fit(x_train, **p), x_train, splits.validation, users_t, items_t)[
                    "ndcg_at_10"
                ],
                p,
            )
            for p in grid
        ]
        best = max(scored, key=lambda s: s[0])[1]
        test = _metrics(fit(x_fit, **best), x_fit, splits.test, users_f, items_f)
        out[name] = {
            "params": best,
            "validation_ndcg_at_10": max(s[0] for s in scored),
            "test": {k: test[k] for k in ("ndcg_at_10", "map_at_10", "recall_at_10", "mrr")},
            "seconds": round(time.perf_counter() - started, 2),
        }
        print(f"{name}: {out[name]['test']} ({out[name]['seconds']} s)", flush=True)
    return out


def _evaluation_speed(data, repeats: int = 5) -> dict:
    """Every user in the test period (per-user split: all 943 users) vs the floor."""
    splits = split_interactions(data, "user_time", 0.1, 0.2)
    model = fit_model("ease", {"l2": 200.0}, splits.fit, 0)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = evaluate_ranking(model, splits.test, KS)
        timings.append(time.perf_counter() - started)
    rows = model.user_index(result.user_ids)
    x, b = model.history[rows[rows >= 0]], model.recommender.state["weights"]
    floor = []
    for _ in range(repeats):
        started = time.perf_counter()
        scores = np.asarray(x @ b)
        np.argpartition(-scores, 20, axis=1)[:, :20]
        floor.append(time.perf_counter() - started)
    keel, base = min(timings), min(floor)
    return {
        "split": "user_time",
        "test_users": len(result.user_ids),
        "catalogue": model.n_items,
        "keel_seconds": round(keel, 4),
        "floor_seconds": round(base, 4),
        "ratio": round(keel / base, 2),
        "note": "Keel also masks seen items, breaks ties reproducibly, ranks the full"
        " catalogue for MRR and computes 16 metrics per user; the floor does none of it",
    }


def _serving(folder: Path) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        import urllib.request

        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        done = _keel(
            folder,
            "loadtest",
            f"http://127.0.0.1:{port}",
            "--requests",
            "3000",
            "--concurrency",
            "8",
            "--json",
        )
        return json.loads(done.stdout)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ann(folder: Path, splits, items: int = 100_000, queries: int = 1_000) -> dict:
    try:
        import faiss
    except ImportError:
        return {"skipped": "faiss-cpu is not installed (pip install faiss-cpu==1.15.1)"}
    from keel.families.recommendation.package import load_recommender

    loaded = load_recommender("movielens@champion", f"sqlite:///{folder / '.keel' / 'mlflow.db'}")
    real = loaded.model.recommender.state.get("item_factors")
    if real is None:  # the chosen model has no factors: ALS on the same data gives them
        real = fit_model("als", {}, splits.fit, 0).recommender.state["item_factors"]
    real = np.asarray(real, dtype=np.float64)
    rng = np.random.default_rng(0)
    vectors = rng.multivariate_normal(real.mean(0), np.cov(real.T), size=items).astype("float32")
    users = rng.multivariate_normal(real.mean(0), np.cov(real.T), size=queries).astype("float32")
    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    scores = users @ vectors.T
    exact = np.argpartition(-scores, 10, axis=1)[:, :10]
    exact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(vectors)
    build = time.perf_counter() - started
    out = {
        "items": items,
        "queries": queries,
        "dimensions": int(vectors.shape[1]),
        "exact_ms_per_query": round(exact_seconds / queries * 1000, 4),
        "hnsw_build_seconds": round(build, 2),
        "hnsw": [],
    }
    for ef in (32, 64, 128, 256):
        index.hnsw.efSearch = ef
        started = time.perf_counter()
        _, found = index.search(users, 10)
        seconds = time.perf_counter() - started
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
        out["hnsw"].append(
            {
                "ef_search": ef,
                "ms_per_query": round(seconds / queries * 1000, 4),
                "recall_at_10": round(float(recall), 4),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_project(folder)
        loaded = yaml.safe_load(config.read_text())
        loaded["trials"] = args.trials
        config.write_text(yaml.safe_dump(loaded, sort_keys=False))
        started = time.perf_counter()
        out = json.loads(_keel(folder, "run", "--json").stdout)
        result["keel"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "chosen": out["model"]["candidate"],
            "models": {
                c["name"]: {
                    k: c["test"][k] for k in ("ndcg_at_10", "map_at_10", "recall_at_10", "mrr")
                }
                | {
                    "warm_ndcg_at_10": c["test_warm"]["ndcg_at_10"],
                    "cold_ndcg_at_10": c["test_cold"]["ndcg_at_10"],
                }
                for c in out["candidates"]
            },
        }
        print(json.dumps(result["keel"], indent=1), flush=True)
        ratings = pd.read_csv(folder / "data" / "ratings.csv")
        settings = type(
            "C",
            (),
            {
                "user_column": "user_id",
                "item_column": "item_id",
                "time_column": "timestamp",
                "rating_column": "rating",
                "relevant_from": 4,
                "sensitive_features": [],
                "item_attribute": None,
            },
        )()
        data = prepare_interactions(ratings, settings)
        splits = split_interactions(
            data, "global_time", loaded["split"]["validation"], loaded["split"]["test"]
        )
        result["direct"] = _direct(splits)
        chosen = result["keel"]["models"][result["keel"]["chosen"]]["ndcg_at_10"]
        best_direct = max(v["test"]["ndcg_at_10"] for v in result["direct"].values())
        result["keel_minus_best_direct_ndcg_at_10"] = round(chosen - best_direct, 4)
        result["evaluation"] = _evaluation_speed(data)
        print(result["evaluation"], flush=True)
        result["serving"] = _serving(folder)
        print({k: result["serving"][k] for k in ("p50_ms", "p95_ms", "throughput")}, flush=True)
        result["ann_100k"] = _ann(folder, splits)
        print(result["ann_100k"], flush=True)
    path = ROOT / "bench" / "results" / "recommend.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
