"""Leak-free splits: stratified, time-based or group-based, seeded and recorded.

Rows identical in every column the model sees (features and target) always land in
the same split: otherwise a test row's twin is in the training rows and test metrics
measure memory, not generalisation. UCI Adult, for one, has 3,465 such repeats in its
32,561 training rows once the sampling weight is ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from keel.errors import DataError


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
        stratified = task != "regression"
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


def _by_rows(frame, target, task, keys, validation, test, seed) -> list[np.ndarray]:
    stratified = task != "regression"
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
    index = np.arange(len(unique_keys))
    try:
        rest, test_idx = train_test_split(
            index, test_size=test, random_state=seed, stratify=labels if stratified else None
        )
        train_idx, val_idx = train_test_split(
            rest,
            test_size=validation / (1.0 - test),
            random_state=seed,
            stratify=labels[rest] if stratified else None,
        )
    except ValueError as exc:
        raise DataError(f"cannot split {len(frame)} rows as configured: {exc}") from exc
    which = np.empty(len(unique_keys), dtype=np.int8)
    which[train_idx], which[val_idx], which[test_idx] = 0, 1, 2
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
