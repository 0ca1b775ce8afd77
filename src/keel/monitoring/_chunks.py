"""Drift over tables larger than memory: chunks → mergeable references → one report.

A table is read a chunk at a time (Parquet by record batches, CSV by ``chunksize``);
each chunk becomes a :class:`DriftReference` (distinct values and counts per numeric
column, counts per category), and the references are merged. Memory is bounded by the
distinct values kept, not by the rows: exact while a column has at most
``max_distinct`` distinct values, a sketch of evenly spaced order statistics beyond
(the report then says "approximate" for that column).

With ``ray_address``, each chunk's reference is built by a Ray task on that cluster
(the driver reads the chunks and ships them; results merge as they come back, at most
``2 × CPUs`` chunks in flight).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from keel.monitoring._reference import (
    CategoricalReference,
    DriftReference,
    NumericReference,
    is_numeric,
)

CHUNK_MAX_DISTINCT = 1_000_000


def table_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The rows of a CSV or Parquet file, ``rows`` at a time.

    Raises
    ------
    ValueError
        For another kind of file.
    """
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as table:
            for batch in table.iter_batches(batch_size=rows):
                yield batch.to_pandas()
        return
    if path.suffix.lower() == ".csv" or suffix in (".csv.gz", ".csv.zst"):
        with pd.read_csv(path, chunksize=rows) as reader:
            yield from reader
        return
    raise ValueError(f"{path}: chunked reading knows .csv and .parquet files")


def total_rows(path: Path) -> int | None:
    """Rows in the file when it says (Parquet's footer); None for CSV."""
    if path.suffix.lower() != ".parquet":
        return None
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as table:
        return table.metadata.num_rows


def chunk_reference(
    frame: pd.DataFrame, kinds: dict[str, str], max_distinct: int = CHUNK_MAX_DISTINCT
) -> dict[str, Any]:
    """One chunk's reference (JSON form, cheap to ship back from a worker)."""
    columns: dict[str, Any] = {}
    for name, kind in kinds.items():
        values = frame[name] if name in frame.columns else pd.Series([None] * len(frame))
        columns[name] = (
            NumericReference.from_values(values, max_distinct)
            if kind == "numeric"
            else CategoricalReference.from_values(values)
        )
    return DriftReference(columns, len(frame)).to_dict()


def kinds_of(frame: pd.DataFrame, columns: list[str] | None = None) -> dict[str, str]:
    """``numeric`` or ``categorical`` per column, from a sample (the first chunk)."""
    names = list(frame.columns) if columns is None else columns
    return {n: "numeric" if is_numeric(frame[n]) else "categorical" for n in names}


def reference_of_file(
    path: Path,
    rows: int,
    kinds: dict[str, str] | None = None,
    columns: list[str] | None = None,
    max_distinct: int = CHUNK_MAX_DISTINCT,
    ray_address: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> DriftReference:
    """The merged reference of a file read ``rows`` at a time (on Ray if asked).

    ``kinds`` fixes each column's kind (else taken from the first chunk); ``progress``
    is called with the rows of each chunk merged.

    Raises
    ------
    ValueError
        When the file is empty or lacks a column.
    """
    chunks = table_chunks(path, rows)
    first = next(chunks, None)
    if first is None or first.empty:
        raise ValueError(f"{path}: no rows")
    if kinds is None:
        kinds = kinds_of(first, columns)
    missing = [c for c in kinds if c not in first.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}")

    def every_chunk() -> Iterator[pd.DataFrame]:
        yield first
        yield from chunks

    merged: DriftReference | None = None

    def absorb(doc: dict[str, Any]) -> None:
        nonlocal merged
        part = DriftReference.from_dict(doc)
        merged = part if merged is None else merged.merge(part, max_distinct)
        if progress is not None:
            progress(part.rows)

    if ray_address is None:
        for chunk in every_chunk():
            absorb(chunk_reference(chunk, kinds, max_distinct))
    else:
        _on_ray(every_chunk(), kinds, max_distinct, ray_address, absorb)
    assert merged is not None  # at least the first chunk
    return merged


def _on_ray(
    chunks: Iterator[pd.DataFrame],
    kinds: dict[str, str],
    max_distinct: int,
    address: str,
    absorb: Callable[[dict[str, Any]], None],
) -> None:
    """Build every chunk's reference as a Ray task; merge results as they finish."""
    from keel._ray import connected

    with connected(address) as ray:
        _reference_tasks(ray, chunks, kinds, max_distinct, absorb)


def _reference_tasks(
    ray: Any,
    chunks: Iterator[pd.DataFrame],
    kinds: dict[str, str],
    max_distinct: int,
    absorb: Callable[[dict[str, Any]], None],
) -> None:
    """At most two tasks per cluster CPU in flight; merged as they finish."""
    build = ray.remote(chunk_reference)
    window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending: list[Any] = []
    for chunk in chunks:
        pending.append(build.remote(chunk, kinds, max_distinct))
        if len(pending) >= window:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                absorb(ray.get(ref))
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            absorb(ray.get(ref))


__all__ = [
    "CHUNK_MAX_DISTINCT",
    "chunk_reference",
    "kinds_of",
    "reference_of_file",
    "table_chunks",
    "total_rows",
]
