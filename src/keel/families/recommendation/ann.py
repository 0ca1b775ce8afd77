"""An approximate index for large catalogues, measured on every build, filters kept.

Exact top-K costs a product with every item: 3.9 ms per user at 100,000 items on one
core (``bench/recommend.py``), so a server at concurrency 8 misses a 20 ms p95 from
about there. From ``recommend.ann.min_items`` items (default 100,000, that measurement)
a factor model (``als``, ``bpr``) is served from a faiss HNSW inner-product index over
its item factors. Every build measures the index's **recall@10 of the exact list** on
``SAMPLE_USERS`` training users; ``efSearch`` doubles until the recall reaches
``recommend.ann.min_recall`` (default 0.95), and an index that cannot reach it within
``MAX_EF`` is not used (exact ranking, said in the record). Filters, rules and seen
items still hold: the index returns ``overfetch × k`` candidates, the mask is applied
to them, and a list left short falls back to the exact ranking of that user.

The index is stored in the package as faiss's own bytes (``faiss.serialize_index``), an
array in ``recommender.npz``: no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MIN_ITEMS = 100_000
SAMPLE_USERS = 1000
MAX_EF = 1024
HNSW_M = 32
EF_CONSTRUCTION = 80


@dataclass
class ItemIndex:
    """A faiss HNSW index over item factors and what its build measured."""

    index: Any
    ef_search: int
    overfetch: int = 4
    record: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        item_factors: np.ndarray,
        user_factors: np.ndarray,
        min_recall: float,
        seed: int = 0,
        ef_search: int = 64,
    ) -> ItemIndex | None:
        """Build, measure recall@10 on sampled users; ``None`` when the floor is not met."""
        import time

        import faiss

        faiss.omp_set_num_threads(1)  # serving and training are one thread here
        items = np.ascontiguousarray(item_factors, dtype=np.float32)
        started = time.perf_counter()
        index = faiss.IndexHNSWFlat(items.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.add(items)
        build = time.perf_counter() - started
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(user_factors), min(SAMPLE_USERS, len(user_factors)), replace=False)
        queries = np.ascontiguousarray(user_factors[pick], dtype=np.float32)
        k = min(10, len(items))
        exact = np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :k]
        tried = []
        ef = ef_search
        while True:
            index.hnsw.efSearch = ef
            started = time.perf_counter()
            _, found = index.search(queries, k)
            seconds = time.perf_counter() - started
            recall = float(
                np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact, strict=True)])
            )
            tried.append(
                {"ef_search": ef, "recall_at_10": round(recall, 4),
                 "ms_per_user": round(seconds / len(queries) * 1000, 4)}
            )  # fmt: skip
            if recall >= min_recall or ef >= MAX_EF:
                break
            ef *= 2
        record = {
            "items": len(items),
            "dimensions": int(items.shape[1]),
            "build_seconds": round(build, 2),
            "sampled_users": len(queries),
            "min_recall": min_recall,
            "tried": tried,
            "recall_at_10": tried[-1]["recall_at_10"],
            "used": recall >= min_recall,
        }
        if recall < min_recall:
            return cls(None, ef, record=record)
        return cls(index, ef, record=record)

    @property
    def used(self) -> bool:
        """Whether lists come from the index (it met the recall floor)."""
        return self.index is not None

    def candidates(self, vectors: np.ndarray, k: int) -> np.ndarray:
        """``overfetch × k`` item columns per user vector, best first (-1: none)."""
        self.index.hnsw.efSearch = max(self.ef_search, self.overfetch * k)
        _, found = self.index.search(
            np.ascontiguousarray(vectors, dtype=np.float32),
            min(self.overfetch * k, self.index.ntotal),
        )
        return found

    def arrays(self) -> dict[str, np.ndarray]:
        """The index as bytes for the package (nothing when it is not used)."""
        if self.index is None:
            return {}
        import faiss

        return {"ann.index": np.asarray(faiss.serialize_index(self.index), dtype=np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ItemIndex | None:
        """The inverse of :meth:`arrays` (``None``: the package has no index)."""
        record = meta.get("ann")
        if not record:
            return None
        if "ann.index" not in arrays:
            return cls(None, int(record.get("ef_search", 64)), record=record)
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.deserialize_index(np.asarray(arrays["ann.index"], dtype=np.uint8))
        return cls(index, int(record["ef_search"]), record=record)


def attach_index(model: Any, min_items: int, min_recall: float, seed: int) -> dict | None:
    """Give a factor model over ``min_items`` or more items its index; the build record.

    ``None`` when no index applies (an item-based model, a smaller catalogue). A record
    with ``used: false`` when faiss is not installed or the recall floor was not met.
    """
    state = model.recommender.state
    if "item_factors" not in state or model.n_items < min_items:
        return None
    try:
        built = ItemIndex.build(state["item_factors"], state["user_factors"], min_recall, seed)
    except ImportError:
        return {
            "used": False,
            "reason": 'faiss-cpu is not installed (pip install "keel-ml[recommend]")',
        }
    model.ann = built if built.used else None
    return {**built.record, "ef_search": built.ef_search}
