"""`keel predict`: batch inference over a file or a SQL query, in chunks, with rejects.

Every chunk goes through the checks serving applies to a request (the same rules, a
column at a time: :func:`keel.data.check_frame`) and the rows that pass are answered by
the same code as ``POST /predict`` (:meth:`Served.outputs`: the same decision
threshold, the same classes). Rows that fail go to a reject file with their row number
and every rule they broke; the rest are scored. Memory holds one chunk, whatever the
input's size. The output (and the reject file) appear whole or not at all: written
beside, then renamed; an existing file is replaced only when asked.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from keel.data import check_frame
from keel.errors import DataError, KeelInputError
from keel.families.tabular.serving.served import Served
from keel.registry import LoadedPackage

CHUNK = 50_000
INPUTS = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")
OUTPUTS = (".parquet", ".pq", ".csv")


@dataclass
class Source:
    """Where the rows come from: a file, or a query on a database URL."""

    location: str
    query: str | None = None
    root: Path = field(default_factory=Path.cwd)

    @property
    def is_sql(self) -> bool:
        """A database URL (then ``query`` is required)."""
        return "://" in self.location

    def shown(self) -> str:
        """For messages and lineage: never a password."""
        if self.is_sql:
            from keel.data._sources import display_url

            return display_url(self.location)
        return str(self.location)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_source(
    source: Source, package: LoadedPackage, chunk: int
) -> tuple[Iterator[pd.DataFrame], int | None, str]:
    """``(chunks, total rows if known, digest)`` of ``source``; DataError when unreadable."""
    if source.is_sql:
        return _sql_chunks(source, chunk)
    if source.query is not None:
        raise KeelInputError("--query goes with a database URL as INPUT, not a file")
    path = Path(source.location)
    path = path if path.is_absolute() else source.root / path
    suffix = path.suffix.lower()
    if suffix not in INPUTS:
        raise KeelInputError(
            f"{path}: read .csv, .parquet or .jsonl (or a database URL with --query),"
            f" not {suffix or 'no suffix'!r}"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows")
    digest = _file_digest(path)
    strings = {c.name: str for c in package.schema.features if c.kind == "string"}
    if suffix == ".csv":
        from keel.data._ingest import _csv_header

        try:
            separator, _ = _csv_header(path)
        except (OSError, ValueError, DataError) as exc:
            raise DataError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from None
        return (
            _guarded(
                lambda: pd.read_csv(path, sep=separator, dtype=strings, chunksize=chunk), path
            ),
            None,
            digest,
        )
    if suffix in (".jsonl", ".ndjson"):
        return (
            _guarded(lambda: pd.read_json(path, lines=True, chunksize=chunk, dtype=False), path),
            None,
            digest,
        )
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from None

    def batches() -> Any:
        parquet = pq.ParquetFile(path)
        return _Closing((b.to_pandas() for b in parquet.iter_batches(batch_size=chunk)), parquet)

    return _guarded(batches, path), rows, digest


class _Closing:
    """Iterate ``items``; ``close()`` closes ``owner`` (a reader holding a file)."""

    def __init__(self, items: Any, owner: Any) -> None:
        self.items, self.owner = items, owner

    def __iter__(self) -> Any:
        return iter(self.items)

    def close(self) -> None:
        self.owner.close()


def _guarded(open_chunks: Callable[[], Any], path: Path) -> Iterator[pd.DataFrame]:
    """Chunks of a file, opened on the first one; a reading error names the file.

    Opening lazily means a run stopped before reading (a refused option) leaves no file
    open.
    """
    chunks = None
    try:
        chunks = open_chunks()
        for frame in chunks:
            frame.columns = [str(c) for c in frame.columns]
            yield frame
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text at byte {exc.start}; re-save it as UTF-8"
        ) from None
    except (pd.errors.ParserError, pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from None
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # the reader's file handle, also when the consumer stops early


def _sql_chunks(source: Source, chunk: int) -> tuple[Iterator[pd.DataFrame], None, str]:
    import sqlalchemy
    from sqlalchemy import exc as sa_exc

    from keel.data._sources import _resolve_sqlite

    if not source.query:
        raise KeelInputError("a database URL as INPUT needs --query 'SELECT ...'")
    shown = source.shown()
    url = _resolve_sqlite(source.location, source.root)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise DataError(f"{shown}: no SQLite database there")
    try:
        engine = sqlalchemy.create_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DataError(f"{shown}: not a usable database URL ({exc})") from None
    digest = hashlib.sha256(f"{shown}\n{source.query}".encode()).hexdigest()

    def chunks() -> Iterator[pd.DataFrame]:
        try:
            with engine.connect() as connection:
                for frame in pd.read_sql_query(
                    sqlalchemy.text(source.query), connection, chunksize=chunk
                ):
                    frame.columns = [str(c) for c in frame.columns]
                    yield frame
        except (sa_exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
            cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) else exc
            detail = str(getattr(cause, "orig", None) or cause or exc).strip().splitlines()[0]
            raise DataError(f"--query failed on {shown}: {detail}") from None
        finally:
            engine.dispose()

    return chunks(), None, digest


def _temporary(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix + ".tmp")
    except OSError as exc:
        raise KeelInputError(
            f"{path}: cannot write there ({exc.strerror or type(exc).__name__});"
            " choose another path"
        ) from None
    os.close(fd)
    return tmp


class _Writer:
    """Appends chunks to a temporary CSV or Parquet file with one fixed schema."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema = path, schema
        self.tmp = _temporary(path)
        self.csv = path.suffix.lower() == ".csv"
        self.parquet: pq.ParquetWriter | None = None
        self.started = False

    def write(self, frame: pd.DataFrame) -> None:
        if self.csv:
            frame.to_csv(self.tmp, mode="a", header=not self.started, index=False)
        else:
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.tmp, self.schema)
            self.parquet.write_table(table)
        self.started = True

    def commit(self) -> None:
        if self.parquet is None and not self.csv:
            self.parquet = pq.ParquetWriter(self.tmp, self.schema)  # an empty file, typed
        if self.parquet is not None:
            self.parquet.close()
            self.parquet = None
        if self.csv and not self.started:
            pd.DataFrame(columns=self.schema.names).to_csv(self.tmp, index=False)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def output_schema(served: Served, ids: list[str]) -> pa.Schema:
    """``row``, the id columns given, ``prediction``, then one probability per class."""
    fields = [pa.field("row", pa.int64())]
    fields += [pa.field(name, pa.string()) for name in ids]
    labelled = served.kind.labelled_classes and hasattr(served.model, "predict_proba")
    fields.append(pa.field("prediction", pa.string() if labelled else pa.float64()))
    if labelled:
        fields += [pa.field(f"probability_{c}", pa.float64()) for c in served.classes]
    return pa.schema(fields)


def predict_file(
    package: LoadedPackage,
    source: Source,
    out: Path,
    rejects: Path | None = None,
    *,
    force: bool = False,
    chunk: int = CHUNK,
    unseen: str = "accept",
    progress: Callable[[int, int | None], None] | None = None,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Score every row of ``source`` into ``out``; failing rows into ``rejects``.

    With ``ray_address`` the chunks are checked and scored by Ray tasks on that cluster
    (the same function, :func:`score_chunk`); the output is the same file.

    Returns the summary (rows, scored, rejected, the problems found most often, digests,
    paths). Raises KeelInputError/DataError before writing anything for a bad path, an
    unreadable input, a missing feature column or an existing output without ``force``.
    """
    if out.suffix.lower() not in OUTPUTS:
        raise KeelInputError(f"{out}: write .parquet or .csv, not {out.suffix or 'no suffix'!r}")
    out = out.absolute()  # the summary and the lineage name files wherever they are read
    rejects = (rejects or out.with_name(out.stem + ".rejects.csv")).absolute()
    if rejects.suffix.lower() != ".csv":
        raise KeelInputError(f"--rejects {rejects}: the reject file is a .csv")
    if rejects.resolve() == out.resolve():
        raise KeelInputError("--rejects must differ from OUTPUT")
    for path in (out, rejects):
        if path.exists() and not force:
            raise KeelInputError(
                f"{path} exists; choose another path or pass --force to replace it"
            )
    if not 1 <= chunk <= 10_000_000:
        raise KeelInputError(f"--chunk must be 1..10,000,000 rows, got {chunk}")
    served = Served(package)
    chunks, total, digest = open_source(source, package, chunk)
    ids = [c.name for c in package.schema.columns if c.role == "id"]
    writer: _Writer | None = None
    bad: _Writer | None = None
    rows = scored = rejected = 0
    rules: dict[str, int] = {}
    scorer = _Local(served) if ray_address is None else _OnRay(package, ray_address)
    try:
        for frame, (answers, refused, problems) in scorer.map(
            _numbered(chunks), source.shown(), unseen
        ):
            if writer is None:  # the first chunk says which id columns the input has
                ids = [name for name in ids if name in frame.columns]
                writer = _Writer(out, output_schema(served, ids))
            if refused is not None:
                bad = bad or _Writer(rejects, pa.schema([]))
                bad.write(refused)
                rejected += len(refused)
                for found in problems:
                    for text in found:
                        rules[_rule(text)] = rules.get(_rule(text), 0) + 1
            if len(answers):
                writer.write(answers[writer.schema.names])
                scored += len(answers)
            rows += len(frame)
            if progress is not None:
                progress(rows, total)
        if writer is None or rows == 0:
            raise DataError(f"{source.shown()}: no rows to score")
        writer.commit()
        if bad is not None:
            bad.commit()
        elif force and rejects.exists():
            rejects.unlink()  # a reject file of an earlier run would describe other rows
    finally:
        chunks.close()  # type: ignore[attr-defined] (a generator: closes its reader)
        scorer.close()
        for pending in (writer, bad):
            if pending is not None:
                pending.discard()
    top = sorted(rules.items(), key=lambda kv: -kv[1])[:10]
    return {
        "model": {"name": package.name, "version": package.version},
        "input": source.shown(),
        "query": source.query,
        "input_digest": digest,
        "rows": rows,
        "scored": scored,
        "rejected": rejected,
        "problems": [{"rule": rule, "rows": n} for rule, n in top],
        "out": str(out),
        "rejects": str(rejects) if rejected else None,
        "decision_threshold": served.threshold,
        "ray_address": ray_address,
    }


def score_chunk(
    served: Served, frame: pd.DataFrame, first_row: int, origin: str, unseen: str
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[list[str]]]:
    """One chunk: ``(answers, rejected rows or None, problems per rejected row)``.

    Rows are numbered from ``first_row`` (1-based, across the whole input).
    """
    ids = [c.name for c in served.schema.columns if c.role == "id" and c.name in frame.columns]
    checked, problems = check_frame(frame, served.schema, served.required, unseen, origin)
    numbers = np.arange(first_row, first_row + len(frame))
    keep = np.ones(len(frame), dtype=bool)
    refused = None
    if problems:
        failing = np.array(sorted(problems))
        keep[failing] = False
        refused = frame.iloc[failing].astype(str).copy()
        refused.insert(0, "problems", ["; ".join(problems[i]) for i in failing])
        refused.insert(0, "row", numbers[failing])
    if len(checked):
        answers = _answers(served, checked, frame[keep], numbers[keep], ids)
    else:
        answers = pd.DataFrame(columns=output_schema(served, ids).names)
    return answers, refused, list(problems.values())


def _numbered(chunks: Iterator[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, int]]:
    """Each chunk with the 1-based number of its first row."""
    first = 1
    for frame in chunks:
        yield frame, first
        first += len(frame)


class _Local:
    """Scores chunks in this process."""

    def __init__(self, served: Served) -> None:
        self.served = served

    def map(
        self, numbered: Iterator[tuple[pd.DataFrame, int]], origin: str, unseen: str
    ) -> Iterator[tuple[pd.DataFrame, Any]]:
        for frame, first in numbered:
            yield frame, score_chunk(self.served, frame, first, origin, unseen)

    def close(self) -> None:
        return None


_SERVED: dict[tuple[str, str], Served] = {}


def _score_remote(
    package: LoadedPackage, frame: pd.DataFrame, first: int, origin: str, unseen: str
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[list[str]]]:
    """A Ray task: the worker keeps one Served per version (built on its first chunk)."""
    import threadpoolctl

    key = (package.name, package.version)
    if key not in _SERVED:
        _SERVED[key] = Served(package)
    with threadpoolctl.threadpool_limits(1):  # the cluster's CPUs are its parallelism
        return score_chunk(_SERVED[key], frame, first, origin, unseen)


class _OnRay:
    """Scores chunks as Ray tasks on a cluster; results come back in input order.

    The driver reads the input (it knows the row numbers) and writes the output (one
    file, in order, renamed into place); the tasks check and score. At most two tasks
    per cluster CPU are in flight, so the driver's memory stays a few chunks deep.
    """

    def __init__(self, package: LoadedPackage, address: str) -> None:
        from keel._ray import connected

        self._scope = connected(address)
        ray = self.ray = self._scope.__enter__()
        self.schema = package.schema
        self.package = ray.put(package)
        self.task = ray.remote(_score_remote)
        self.window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map(
        self, numbered: Iterator[tuple[pd.DataFrame, int]], origin: str, unseen: str
    ) -> Iterator[tuple[pd.DataFrame, Any]]:
        from collections import deque

        pending: deque[tuple[pd.DataFrame, Any]] = deque()
        for frame, first in numbered:
            if first == 1:
                check_frame(frame.head(0), self.schema, (), unseen, origin)  # columns first
            pending.append((frame, self.task.remote(self.package, frame, first, origin, unseen)))
            if len(pending) >= self.window:
                yield self._next(pending)
        while pending:
            yield self._next(pending)

    def _next(self, pending: Any) -> tuple[pd.DataFrame, Any]:
        frame, ref = pending.popleft()
        try:
            return frame, self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None

    def close(self) -> None:
        self._scope.__exit__(None, None, None)


def _rule(message: str) -> str:
    """A problem without the row's own values (quoted text, numbers): its rule, to count."""
    column, _, text = message.partition(": ")
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"(?<![\w.])-?\d+(\.\d+)?(e[-+]?\d+)?(?![\w.])", "N", text)
    return f"{column}: {text}"


def _answers(
    served: Served, checked: pd.DataFrame, raw: pd.DataFrame, numbers: np.ndarray, ids: list[str]
) -> pd.DataFrame:
    predictions, proba = served.outputs(checked)
    block: dict[str, Any] = {"row": numbers}
    for name in ids:
        block[name] = raw[name].astype(str).to_numpy()
    if proba is not None:
        block["prediction"] = [str(p) for p in predictions]
        rounded = np.round(proba, 6)  # as /predict answers
        for k, name in enumerate(served.classes):
            block[f"probability_{name}"] = rounded[:, k]
    else:
        block["prediction"] = np.asarray(predictions, dtype=float)
    return pd.DataFrame(block)


__all__ = ["CHUNK", "Source", "open_source", "output_schema", "predict_file"]
