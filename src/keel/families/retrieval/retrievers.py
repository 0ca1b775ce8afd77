"""Retrievers over chunks of a corpus: lexical overlap, BM25, dense, hybrid.

Every retriever answers :meth:`Retriever.search` — the best ``depth`` chunks of one
query with their scores — from the same package: the chunks, a BM25 index (``bm25s``,
Snowball-stemmed, English stop words out) and a dense index (WordLlama embeddings, the
16 MB model inside its wheel, in a FAISS exact inner-product index:
``bench/retrieval_index.py`` measured it against usearch and FAISS HNSW).

- ``overlap``: how many distinct query terms a chunk holds (no IDF, no length
  normalisation): the baseline every candidate must beat.
- ``bm25``: Okapi BM25 (Lucene's variant), ``k1`` and ``b`` tuned.
- ``dense``: cosine of WordLlama embeddings.
- ``hybrid``: reciprocal rank fusion of the BM25 and dense lists,
  ``weight / (rrf_k + rank_bm25) + (1 - weight) / (rrf_k + rank_dense)``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs every CPU feature tried

RETRIEVERS: tuple[str, ...] = ("bm25", "dense", "hybrid")
BASELINE = "overlap"
DEFAULT_PARAMS: dict[str, dict[str, float]] = {
    "overlap": {},
    "bm25": {"k1": 1.2, "b": 0.75},
    "dense": {},
    "hybrid": {"k1": 1.2, "b": 0.75, "weight": 0.5, "rrf_k": 60.0},
}
SEARCH_SPACES: dict[str, dict[str, list[float]]] = {
    "overlap": {},
    "bm25": {"k1": [0.9, 1.2, 1.6], "b": [0.4, 0.75, 0.9]},
    "dense": {},
    "hybrid": {"weight": [0.3, 0.5, 0.7], "rrf_k": [10.0, 60.0]},
}
DEPTH = 100
"""Chunks every retriever ranks per query (MRR is MRR@100 chunks)."""
EMBEDDING_DIM = 256
_WORD = re.compile(r"[a-z0-9]+(?:[_'][a-z0-9]+)*")
_SENTENCE_END = re.compile(
    r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])|\n\s*\n+|\n(?=\s*(?:[-*+>|] |#+ |\d+[.)] |```))"
    r"|(?<=```)\n"
)
LONGEST_SENTENCE = 60
"""Words: a longer "sentence" (a table, a code block) is cut into pieces of this size."""


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (list items, headings, code fences apart), none empty.

    Whitespace-normalised; none longer than :data:`LONGEST_SENTENCE` words.
    """
    out = []
    for part in _SENTENCE_END.split(text):
        words = part.split()
        for start in range(0, len(words), LONGEST_SENTENCE):
            out.append(" ".join(words[start : start + LONGEST_SENTENCE]))
    return [p for p in out if p]


@functools.cache
def _bm25s() -> Any:
    """bm25s, imported once; it sets its logger to DEBUG on import (every index built)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


@functools.cache
def _stopwords() -> frozenset[str]:
    _bm25s()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def terms(text: str) -> list[str]:
    """Lower-cased, stop words out, Snowball-stemmed terms of ``text``."""
    stop = _stopwords()
    words = [w for w in _WORD.findall(text.lower()) if w not in stop]
    return _stemmer().stemWords(words) if words else []


@functools.cache
def embedder() -> Any:
    """WordLlama's 256-d model, loaded from its wheel (never downloaded)."""
    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    vectors = np.asarray(embedder().embed(list(texts), norm=True), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class Retriever:
    """A retriever's scoring over the chunk indexes of one package."""

    def __init__(
        self,
        kind: str,
        params: dict[str, float],
        texts: list[str],
        bm25: Any = None,
        dense: Any = None,
    ) -> None:
        if kind not in (*RETRIEVERS, BASELINE):
            raise ValueError(f"unknown retriever {kind!r}")
        self.kind = kind
        self.params = {**DEFAULT_PARAMS[kind], **params}
        self.n = len(texts)
        self._terms: list[frozenset[str]] | None = None
        self._texts = texts
        lexical = kind in ("bm25", "hybrid")
        self.bm25 = bm25 if bm25 is not None or not lexical else build_bm25(texts, self.params)
        self.dense = dense if (dense is not None or kind in ("bm25", "overlap")) else None
        if self.dense is None and kind in ("dense", "hybrid"):
            self.dense = build_dense(embed(texts))

    # --- scoring ------------------------------------------------------------------------

    def search(
        self, query: str, depth: int = DEPTH, vector: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(chunk rows, scores)`` of the best ``depth`` chunks, best first.

        Chunks with nothing in common with the query (score 0 for ``overlap`` and
        ``bm25``) are not returned.
        """
        depth = min(depth, self.n)
        if self.kind == "overlap":
            return _top(self._overlap(query), depth, positive=True)
        if self.kind == "bm25":
            return _top(self._bm25(query), depth, positive=True)
        vector = embed([query])[0] if vector is None else vector
        if self.kind == "dense":
            return self._dense(vector, depth)
        lexical, _ = _top(self._bm25(query), depth, positive=True)
        dense, _ = self._dense(vector, depth)
        weight, rrf_k = self.params["weight"], self.params["rrf_k"]
        fused: dict[int, float] = {}
        for rank, row in enumerate(lexical, 1):
            fused[int(row)] = fused.get(int(row), 0.0) + weight / (rrf_k + rank)
        for rank, row in enumerate(dense, 1):
            fused[int(row)] = fused.get(int(row), 0.0) + (1 - weight) / (rrf_k + rank)
        ordered = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
        return (
            np.array([r for r, _ in ordered], dtype=np.int64),
            np.array([s for _, s in ordered], dtype=np.float64),
        )

    def _bm25(self, query: str) -> np.ndarray:
        vocab = self.bm25.vocab_dict
        found = [t for t in terms(query) if t in vocab]
        if not found:
            return np.zeros(self.n)
        return np.asarray(self.bm25.get_scores(found), dtype=np.float64)

    def _overlap(self, query: str) -> np.ndarray:
        if self._terms is None:
            self._terms = [frozenset(terms(t)) for t in self._texts]
        wanted = set(terms(query))
        return np.array([len(wanted & t) for t in self._terms], dtype=np.float64)

    def _dense(self, vector: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.dense.search(vector[None, :].astype(np.float32), depth)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float64)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (the stage store): the FAISS index as its serialised bytes."""
        import faiss

        state = dict(self.__dict__)
        if self.dense is not None:
            state["dense"] = faiss.serialize_index(self.dense)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import faiss

        if state.get("dense") is not None:
            state["dense"] = faiss.deserialize_index(state["dense"])
        self.__dict__.update(state)

    def similarity(self, vector: np.ndarray) -> float:
        """Cosine of ``vector`` with its nearest chunk (out-of-corpus queries score low)."""
        index = self.dense
        if index is None:
            return float("nan")
        scores, _ = index.search(vector[None, :].astype(np.float32), 1)
        return float(scores[0][0])


def _top(scores: np.ndarray, depth: int, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    candidates = np.flatnonzero(scores > 0) if positive else np.arange(len(scores))
    if len(candidates) > depth:
        part = np.argpartition(-scores[candidates], depth - 1)[:depth]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))  # ties: earlier chunk first
    rows = candidates[order]
    return rows.astype(np.int64), scores[rows]


def build_bm25(texts: list[str], params: dict[str, float]) -> Any:
    """A BM25 index of ``texts`` (Lucene's BM25, ``k1`` and ``b`` from ``params``)."""
    bm25s = _bm25s()
    model = bm25s.BM25(k1=params.get("k1", 1.2), b=params.get("b", 0.75), method="lucene")
    model.index([terms(t) or [""] for t in texts], show_progress=False)
    return model


def build_dense(vectors: np.ndarray) -> Any:
    """An exact inner-product FAISS index of unit vectors (cosine), one thread."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(vectors.shape[1] if vectors.size else EMBEDDING_DIM)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def document_frequencies(texts: list[str]) -> dict[str, int]:
    """Term → number of chunks holding it (the answer's IDF weights)."""
    counts: dict[str, int] = {}
    for text in texts:
        for term in set(terms(text)):
            counts[term] = counts.get(term, 0) + 1
    return counts


def save_indexes(folder: Path, bm25: Any, dense: Any) -> list[str]:
    """Write the BM25 arrays (no pickle) and the FAISS index; return the file names."""
    import faiss

    written = []
    if bm25 is not None:
        bm25.save(str(folder / "bm25"), allow_pickle=False, show_progress=False)
        written += [f"bm25/{p.name}" for p in sorted((folder / "bm25").iterdir())]
    if dense is not None:
        faiss.write_index(dense, str(folder / "dense.faiss"))
        written.append("dense.faiss")
    return written


def load_indexes(folder: Path) -> tuple[Any, Any]:
    """The BM25 and FAISS indexes saved by :func:`save_indexes` (either may be ``None``)."""
    bm25s = _bm25s()
    bm25 = None
    if (folder / "bm25").is_dir():
        bm25 = bm25s.BM25.load(str(folder / "bm25"), allow_pickle=False, load_corpus=False)
    dense = None
    if (folder / "dense.faiss").is_file():
        import faiss

        faiss.omp_set_num_threads(1)
        dense = faiss.read_index(str(folder / "dense.faiss"))
    return bm25, dense


def dumps(document: Any) -> str:
    """Sorted JSON (package files are compared by digest)."""
    return json.dumps(document, sort_keys=True, default=str)
