"""`keel recommend`: top-K for every user of a file, in chunks, to Parquet or CSV.

Users are read from a CSV / Parquet / JSON Lines file (the model's user column, or the
only column), ranked one chunk at a time with the served model's own code (the same
answers as ``POST /recommend``), and written as they come: memory holds one chunk of
users × the catalogue, never the whole user × item matrix. The output appears whole or
not at all (written beside, then renamed); an existing file is never replaced unless
asked.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from keel.errors import DataError, KeelInputError, did_you_mean
from keel.families.recommendation.package import LoadedRecommender
from keel.families.recommendation.rules import Filters, RuleError, item_mask
from keel.families.recommendation.task import chunk_users

CHUNK = 1024
OUTPUTS = (".parquet", ".pq", ".csv")


def _users(path: Path, column: str | None) -> pd.Series:
    from keel.data import read_table

    frame = read_table(path)
    columns = [str(c) for c in frame.columns]
    if column is None or column not in columns:
        if len(columns) == 1:
            column = columns[0]
        else:
            wanted = column or "user_id"
            raise DataError(
                f"{path}: no column {wanted!r}{did_you_mean(wanted, columns)}; give the"
                " users in a column named like the model's user column, or one column only"
            )
    values = frame[column]
    empty = values.isna().to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError(f"{path}: row {row + 1}: column {column!r} is empty; drop or fill it")
    if pd.api.types.is_float_dtype(values) and (values == values.round()).all():
        values = values.astype("int64")
    return values.astype(str)


def recommend_file(
    loaded: LoadedRecommender,
    users_file: Path,
    out: Path,
    k: int = 10,
    force: bool = False,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
    filters: Filters | None = None,
) -> dict[str, Any]:
    """Write the top-``k`` of every user in ``users_file`` to ``out``; return a summary.

    ``filters`` narrow every user's list as a request's ``filters`` do; keel.yaml's
    business rules, kept in the package, hold as they do on the server.
    """
    if out.suffix.lower() not in OUTPUTS:
        raise KeelInputError(f"{out}: write .parquet or .csv, not {out.suffix or 'no suffix'!r}")
    if out.exists() and not force:
        raise KeelInputError(f"{out} exists; choose another path or pass --force to replace it")
    if not 1 <= k <= 1000:
        raise KeelInputError(f"--k must be 1..1000, got {k}")
    users = _users(users_file, loaded.metadata.get("user_column"))
    model = loaded.model
    only = None
    if filters is not None and not filters.empty:
        try:
            only, unknown = item_mask(filters, pd.Index(model.item_ids), model.attributes)
        except RuleError as exc:
            raise KeelInputError(f"--filters: {exc}") from None
        if unknown:
            raise KeelInputError(
                f"--filters: {len(unknown)} item id(s) not in the catalogue of {loaded.name}"
                f" version {loaded.version}: {', '.join(map(repr, unknown[:10]))}"
            )
    chunk = chunk_users(model.n_items, chunk)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=out.suffix + ".tmp")
    except OSError as exc:
        raise KeelInputError(
            f"{out}: cannot write there ({exc.strerror or type(exc).__name__}); choose another path"
        ) from None
    os.close(fd)
    writer = None
    cold_users = rows = 0
    try:
        for start in range(0, len(users), chunk):
            ids = users.iloc[start : start + chunk].to_numpy()
            lists, scores, cold = model.rank(model.user_index(ids), k, only=only)
            valid = lists >= 0
            block = pd.DataFrame(
                {
                    "user_id": np.repeat(ids, k)[valid.ravel()],
                    "rank": np.tile(np.arange(1, k + 1), len(ids))[valid.ravel()],
                    "item_id": model.item_ids[np.maximum(lists, 0)].ravel()[valid.ravel()],
                    "score": scores.ravel()[valid.ravel()],
                    "cold_start": np.repeat(cold, k)[valid.ravel()],
                }
            )
            if out.suffix.lower() == ".csv":
                block.to_csv(tmp, mode="a", header=start == 0, index=False)
            else:
                table = pa.Table.from_pandas(block, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            cold_users += int(cold.sum())
            rows += len(block)
            if progress is not None:
                progress(min(start + chunk, len(users)), len(users))
        if writer is not None:
            writer.close()
            writer = None
        if not len(users):
            raise DataError(f"{users_file}: no users in the file")
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {
        "model": {"name": loaded.name, "version": loaded.version},
        "users": len(users),
        "cold_start_users": cold_users,
        "rows": rows,
        "k": k,
        "filters": None if filters is None or filters.empty else vars(filters),
        "out": str(out),
    }
