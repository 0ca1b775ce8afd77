"""Leak-free splits: stratified, time-based or group-based, seeded and recorded.

Rows identical in every column the model sees (features and target) always land in
the same split: otherwise a test row's twin is in the training rows and test metrics
measure memory, not generalisation. UCI Adult, for one, has 3,465 such repeats in its
32,561 training rows once the sampling weight is ignored.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from keel.errors import DataError
from keel.tasks import get_task


@dataclass(frozen=True)
class Splits:
    """Non-overlapping train / validation / test rows of one dataset."""

    train: pd.DataFrame = field(repr=False)
    validation: pd.DataFrame = field(repr=False)
    test: pd.DataFrame = field(repr=False)
    seed: int
    stratified: bool
    digest: str
    method: str = "stratified"
    details: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Rows in each split."""
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash per row over ``columns``: equal rows get equal keys."""
    return pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy(np.uint64)


def encode_row_keys(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> dict[str, Any]:
    """The rows a model was fitted on, as a compact document for its package.

    Sorted unique 64-bit keys of ``frames`` over ``columns`` (see :func:`row_keys`),
    base64-encoded: 8 bytes per distinct row. :func:`rows_seen` answers later which rows
    of another frame were among them, without the training data.
    """
    keys = np.unique(np.concatenate([row_keys(f, columns) for f in frames]))
    return {
        "columns": list(columns),
        "rows": len(keys),
        "keys": base64.b64encode(keys.astype("<u8").tobytes()).decode("ascii"),
    }


def rows_seen(document: dict[str, Any], frame: pd.DataFrame) -> np.ndarray | None:
    """Which rows of ``frame`` are among the rows ``document`` records (``None``: can't tell).

    ``None`` when ``frame`` lacks one of the recorded columns. Rows match when they are
    equal, with the same types, on every recorded column.
    """
    columns = document.get("columns", [])
    if not columns or any(c not in frame.columns for c in columns):
        return None
    known = np.frombuffer(base64.b64decode(document["keys"]), dtype="<u8")
    return np.isin(row_keys(frame, columns), known)


def split_frame(
    frame: pd.DataFrame,
    target: str,
    task: str,
    validation: float = 0.2,
    test: float = 0.2,
    seed: int = 42,
    *,
    key_columns: Sequence[str] | None = None,
    time_column: str | None = None,
    group_column: str | None = None,
) -> Splits:
    """Split rows into train/validation/test.

    * ``time_column``: the earliest rows train, the latest test; a timestamp never
      straddles two splits, so every test row is strictly later than every train row.
    * ``group_column``: whole groups go to one split (seeded).
    * otherwise: seeded, stratified by the target for classification, with rows
      identical on ``key_columns`` (default: all columns) kept together.

    Raises
    ------
    DataError
        When a class is too small to appear in every split, or the time or group
        column cannot make three non-empty splits.
    """
    if time_column is not None:
        parts, method, details = _by_time(frame, time_column, validation, test)
        stratified = False
    elif group_column is not None:
        parts, method, details = _by_group(frame, group_column, validation, test, seed)
        stratified = False
    else:
        keys = row_keys(frame, key_columns or list(frame.columns))
        parts = _by_rows(frame, target, task, keys, validation, test, seed)
        stratified = get_task(task).stratified
        method = "stratified" if stratified else "random"
        details = {"repeated_rows_kept_together": int(len(keys) - len(np.unique(keys)))}
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        if len(part) == 0:
            raise DataError(f"the {name} split is empty; the data has too few rows for this split")
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.sort(part).astype(np.int64).tobytes())
        digest.update(b"|")
    train, val, tst = (frame.iloc[np.sort(p)].reset_index(drop=True) for p in parts)
    return Splits(
        train=train,
        validation=val,
        test=tst,
        seed=seed,
        stratified=stratified,
        digest=digest.hexdigest()[:16],
        method=method,
        details=details,
    )


def _mix(keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of ``keys`` xor the seed: a seeded, uniform 64-bit position per key."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _by_rows(frame, target, task, keys, validation, test, seed) -> list[np.ndarray]:
    """Stratified, seeded and *stable*: a row keeps its split when the data changes.

    Each row gets a seeded position from a hash of all its columns (ignored ones too);
    a group of rows identical on ``keys``' columns takes its smallest position; within
    each class, groups in position order fill test, then validation, then train. A row
    therefore stays in its split when columns are ignored or added, or rows appended
    (only rows near a boundary can move): a new model version is tested mostly on rows
    the previous one never trained on, and can be compared with it fairly.
    """
    stratified = get_task(task).stratified
    y = frame[target].to_numpy()
    unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    labels = y[first]
    if stratified:
        counts = pd.Series(labels).value_counts()
        rare = counts[counts < 3]
        if not rare.empty:
            raise DataError(
                f"target {target!r}: class {rare.index[0]!r} has only {int(rare.iloc[0])}"
                " distinct row(s); every class needs at least 3 to appear in train,"
                " validation and test"
            )
    if len(unique_keys) < 3:
        raise DataError(
            f"cannot split {len(frame)} rows as configured: only {len(unique_keys)} distinct"
            " row(s); train, validation and test need one each"
        )
    position = np.full(len(unique_keys), np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(position, inverse, _mix(row_keys(frame, list(frame.columns)), seed))
    strata = pd.factorize(labels)[0] if stratified else np.zeros(len(unique_keys), dtype=np.int64)
    which = np.zeros(len(unique_keys), dtype=np.int8)  # 0 train, 1 validation, 2 test
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        members = members[np.argsort(position[members], kind="stable")]
        n = len(members)
        n_test = min(max(1, round(n * test)), n - 2) if stratified else round(n * test)
        n_val = round(n * validation)
        if stratified:
            n_val = min(max(1, n_val), n - n_test - 1)
        which[members[:n_test]] = 2
        which[members[n_test : n_test + n_val]] = 1
    row_split = which[inverse]
    return [np.flatnonzero(row_split == k) for k in range(3)]


def _by_time(frame, column, validation, test) -> tuple[list[np.ndarray], str, dict]:
    raw = frame[column]
    times = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_datetime(raw, errors="coerce")
    bad = times.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"time_column {column!r}: {int(bad.sum())} value(s) are not dates or numbers"
            f" (first at row {row + 1}: {raw.iloc[row]!r})"
        )
    if times.isna().any():
        raise DataError(
            f"time_column {column!r}: {int(times.isna().sum())} row(s) have no time;"
            " fill or drop them"
        )
    order = np.argsort(times.to_numpy(), kind="stable")
    ordered = times.to_numpy()[order]
    n = len(frame)
    cut_test = _boundary(ordered, round(n * (1 - test)))
    cut_val = _boundary(ordered, round(n * (1 - test - validation)))
    parts = [order[:cut_val], order[cut_val:cut_test], order[cut_test:]]
    if any(len(p) == 0 for p in parts):
        raise DataError(
            f"time_column {column!r}: too few distinct times ({len(np.unique(ordered))})"
            " to give train, validation and test rows that do not share a timestamp"
        )
    edges = {
        "train_until": str(ordered[cut_val - 1]),
        "validation_from": str(ordered[cut_val]),
        "test_from": str(ordered[cut_test]),
    }
    return parts, "time", edges


def _boundary(ordered: np.ndarray, position: int) -> int:
    """Move a cut forward so that no timestamp is on both sides of it."""
    position = min(max(position, 1), len(ordered) - 1)
    while position < len(ordered) and ordered[position] == ordered[position - 1]:
        position += 1
    return position


def _by_group(frame, column, validation, test, seed) -> tuple[list[np.ndarray], str, dict]:
    groups = frame[column]
    if groups.isna().any():
        raise DataError(
            f"group_column {column!r}: {int(groups.isna().sum())} row(s) have no group; fill them"
        )
    n_groups = groups.nunique()
    if n_groups < 3:
        raise DataError(
            f"group_column {column!r} has {n_groups} group(s); at least 3 are needed to give"
            " train, validation and test each their own groups"
        )
    index = np.arange(len(frame))
    outer = GroupShuffleSplit(n_splits=1, test_size=test, random_state=seed)
    rest, test_idx = next(outer.split(index, groups=groups))
    inner = GroupShuffleSplit(n_splits=1, test_size=validation / (1 - test), random_state=seed)
    train_rel, val_rel = next(inner.split(rest, groups=groups.iloc[rest]))
    parts = [rest[train_rel], rest[val_rel], test_idx]
    return parts, "group", {"groups": int(n_groups)}
