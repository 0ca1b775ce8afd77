"""Ingest: read a table, give it a content digest, store an immutable snapshot."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from keel.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")
DIGEST_LENGTH = 16


@dataclass(frozen=True)
class Dataset:
    """A table read from a source, identified by the digest of its content.

    Attributes
    ----------
    frame
        The rows, exactly as read (never modified in place by Keel).
    source
        Where the rows came from (an absolute path or URI).
    digest
        Content digest: same rows and columns give the same digest, whatever the
        order of the rows.
    """

    frame: pd.DataFrame = field(repr=False)
    source: str
    digest: str
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return len(self.frame)

    @property
    def columns(self) -> list[str]:
        """Column names, in file order."""
        return [str(c) for c in self.frame.columns]


def read_columns(path: str | Path) -> list[str]:
    """Return the column names of a data file without reading its rows."""
    file = _check_file(path)
    try:
        suffix = file.suffix.lower()
        if suffix == ".csv":
            return [str(c) for c in pd.read_csv(file, nrows=0).columns]
        if suffix in (".jsonl", ".ndjson"):
            return [str(c) for c in _read_json_lines(file).columns]
        return [str(n) for n in pq.read_schema(file).names]
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: has no header row of column names ({exc})") from exc
    except (pd.errors.ParserError, pa.ArrowException, OSError) as exc:
        raise DataError(f"{file}: cannot be read as {file.suffix[1:]}: {_first_line(exc)}") from exc


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame, with one clear error when it fails."""
    file = _check_file(path)
    try:
        suffix = file.suffix.lower()
        if suffix == ".csv":
            separator, _ = _csv_header(file)
            frame = pd.read_csv(file, sep=separator, low_memory=False)
        elif suffix in (".jsonl", ".ndjson"):
            frame = _read_json_lines(file)
        else:
            frame = pq.read_table(file).to_pandas()
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{file}: the file is empty; it needs a header row and data rows") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not UTF-8 text at byte {exc.start}; re-save it as UTF-8") from exc
    except (pd.errors.ParserError, pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{file}: cannot be read as {file.suffix[1:]}: {_first_line(exc)}") from exc
    if frame.shape[1] == 0:
        raise DataError(f"{file}: has no columns")
    if len(frame) == 0:
        raise DataError(f"{file}: has a header but no data rows")
    duplicated = [str(c) for c in frame.columns[frame.columns.duplicated()]]
    if duplicated:
        raise DataError(f"{file}: column names appear twice: {', '.join(duplicated)}")
    unnamed = [str(c) for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed:
        raise DataError(
            f"{file}: {len(unnamed)} column(s) have no name in the header (first: {unnamed[0]});"
            " name every column"
        )
    frame.columns = [str(c) for c in frame.columns]
    return frame


def ingest(path: str | Path) -> Dataset:
    """Read ``path`` and compute its content digest."""
    file = Path(path).resolve()
    frame = read_table(file)
    return Dataset(
        frame=frame,
        source=str(file),
        digest=content_digest(frame),
        lineage={"kind": "file", "uri": str(file)},
    )


SEPARATORS = (",", ";", "\t", "|")


def _csv_header(file: Path) -> tuple[str, list[str]]:
    """Find the separator from the header line, and refuse duplicated column names.

    A header with no comma but several semicolons (tabs, pipes) is read with that
    separator, so files saved by spreadsheets in other locales just work.
    """
    with file.open(encoding="utf-8", newline="") as handle:
        first = handle.readline()
    if not first.strip():
        raise DataError(f"{file}: the first line is empty; it must be the header row")
    counts = {sep: first.count(sep) for sep in SEPARATORS}
    separator = "," if counts[","] else max(counts, key=lambda k: counts[k])
    if counts[separator] == 0:
        separator = ","
    header = next(csv.reader([first], delimiter=separator))
    names = [h.strip() for h in header]
    seen: set[str] = set()
    twice = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if twice:
        raise DataError(f"{file}: column names appear twice in the header: {', '.join(twice)}")
    return separator, names


def _read_json_lines(file: Path) -> pd.DataFrame:
    """Read JSON Lines: one JSON object per line; a bad line is named by its number."""
    rows = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{file}: line {number} is not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{file}: line {number} is not a JSON object")
            rows.append(row)
    if not rows:
        raise DataError(f"{file}: has no rows (JSON Lines wants one object per line)")
    return pd.DataFrame.from_records(rows)


def content_digest(frame: pd.DataFrame) -> str:
    """Digest of a table's content that does not depend on the order of its rows.

    Each row is hashed (with its column names and dtypes), the row hashes are
    sorted, and the sorted hashes are hashed again with SHA-256.
    """
    header = "\x1f".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode()
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    digest = hashlib.sha256(header)
    digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()[:DIGEST_LENGTH]


def snapshot(dataset: Dataset, store: str | Path) -> Path:
    """Store ``dataset`` once under ``store/<digest>/data.parquet`` and return the path.

    The same content is never copied twice; the write is atomic (temp file, then
    rename), so a crash never leaves a half-written snapshot.
    """
    target = Path(store) / dataset.digest / "data.parquet"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(pa.Table.from_pandas(dataset.frame, preserve_index=False), tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _check_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.exists():
        raise DataError(f"{file}: no such file")
    if not file.is_file():
        raise DataError(f"{file}: not a file")
    if file.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{file}: unsupported file type {file.suffix or '(none)'};"
            f" use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if file.stat().st_size == 0:
        raise DataError(f"{file}: the file is empty; it needs a header row and data rows")
    return file


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
