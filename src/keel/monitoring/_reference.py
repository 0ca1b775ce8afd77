"""A drift reference small enough to ship in the model package, exact where it can be.

Monitoring must not need the training data. What KS, chi-square, PSI, JS and
Wasserstein need from the reference side is its distribution per column: for a numeric
column the distinct values and how often each occurs (the empirical CDF, exactly), for
a categorical column the count per category. Both are *mergeable*: the reference of two
chunks is the sum of their references, so a reference is built in one pass over data
of any size.

A numeric column with more than ``max_distinct`` distinct values keeps ``max_distinct``
evenly spaced order statistics, each standing for its share of the rows; its tests are
then approximate and the column says so (``exact: false``). Adult's numeric columns
have at most a few hundred distinct values, so its reference is exact and a few KB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MAX_DISTINCT = 20_000
MAX_CATEGORIES = 1_000
MISSING = "(missing)"
OTHER = "(other)"


def is_numeric(series: pd.Series) -> bool:
    """Numbers (not booleans): tested with KS; anything else with chi-square."""
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


@dataclass
class NumericReference:
    """Distinct values (sorted) and their counts; ``missing`` non-numbers."""

    values: np.ndarray
    counts: np.ndarray
    missing: int = 0
    exact: bool = True
    _sample: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_values(cls, series: pd.Series, max_distinct: int = MAX_DISTINCT) -> NumericReference:
        """The reference of one column's values."""
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(float)
        finite = numbers[np.isfinite(numbers)]
        values, counts = np.unique(finite, return_counts=True)
        out = cls(values, counts.astype(np.int64), int(len(numbers) - len(finite)))
        return out.compact(max_distinct)

    @property
    def rows(self) -> int:
        """Numbers counted."""
        return int(self.counts.sum())

    def merge(self, other: NumericReference, max_distinct: int = MAX_DISTINCT) -> NumericReference:
        """The reference of both samples together."""
        values, inverse = np.unique(
            np.concatenate((self.values, other.values)), return_inverse=True
        )
        counts = np.bincount(
            inverse, weights=np.concatenate((self.counts, other.counts)), minlength=len(values)
        ).astype(np.int64)
        merged = NumericReference(
            values, counts, self.missing + other.missing, self.exact and other.exact
        )
        return merged.compact(max_distinct)

    def compact(self, max_distinct: int) -> NumericReference:
        """At most ``max_distinct`` values: evenly spaced order statistics (inexact)."""
        if len(self.values) <= max_distinct:
            return self
        cumulative = np.cumsum(self.counts)
        total = int(cumulative[-1])
        # the value at each of max_distinct evenly spaced ranks stands for its share
        ranks = np.linspace(0, total - 1, max_distinct).round().astype(np.int64)
        positions = np.searchsorted(cumulative, ranks, side="right")
        values = self.values[positions]
        cut = np.diff(np.linspace(0, total, max_distinct + 1).round().astype(np.int64))
        values, inverse = np.unique(values, return_inverse=True)
        counts = np.bincount(inverse, weights=cut, minlength=len(values)).astype(np.int64)
        return NumericReference(values, counts, self.missing, exact=False)

    def sample(self) -> np.ndarray:
        """The sorted sample this reference stands for (exact when ``exact``; cached)."""
        if self._sample is None:
            self._sample = np.repeat(self.values, self.counts)
        return self._sample

    def to_dict(self) -> dict[str, Any]:
        """JSON form (values as floats, counts as ints)."""
        return {
            "kind": "numeric",
            "values": self.values.tolist(),
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "exact": self.exact,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericReference:
        """Read the JSON form back."""
        return cls(
            np.asarray(data["values"], dtype=float),
            np.asarray(data["counts"], dtype=np.int64),
            int(data.get("missing", 0)),
            bool(data.get("exact", True)),
        )


@dataclass
class CategoricalReference:
    """Count per category (missing values counted as ``(missing)``)."""

    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_values(
        cls, series: pd.Series, max_categories: int = MAX_CATEGORIES
    ) -> CategoricalReference:
        """The reference of one column's values."""
        counts = series.astype("string").fillna(MISSING).value_counts()
        out = cls({str(k): int(v) for k, v in counts.items()})
        return out.compact(max_categories)

    @property
    def rows(self) -> int:
        """Values counted."""
        return sum(self.counts.values())

    def merge(
        self, other: CategoricalReference, max_categories: int = MAX_CATEGORIES
    ) -> CategoricalReference:
        """The reference of both samples together."""
        counts = dict(self.counts)
        for key, n in other.counts.items():
            counts[key] = counts.get(key, 0) + n
        return CategoricalReference(counts).compact(max_categories)

    def compact(self, max_categories: int) -> CategoricalReference:
        """The most frequent categories; the rest pooled as ``(other)``."""
        if len(self.counts) <= max_categories:
            return self
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = dict(ranked[: max_categories - 1])
        kept[OTHER] = kept.get(OTHER, 0) + sum(n for _, n in ranked[max_categories - 1 :])
        return CategoricalReference(kept)

    def series(self) -> pd.Series:
        """The counts as a Series (index: category)."""
        return pd.Series(self.counts, dtype="int64")

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": "categorical", "counts": self.counts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalReference:
        """Read the JSON form back."""
        return cls({str(k): int(v) for k, v in data["counts"].items()})


ColumnReference = NumericReference | CategoricalReference


@dataclass
class DriftReference:
    """Per-column references of a table (and optionally of the model's outputs)."""

    columns: dict[str, ColumnReference]
    rows: int = 0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, columns: list[str] | None = None) -> DriftReference:
        """The reference of ``frame`` (or of its ``columns``)."""
        names = list(frame.columns) if columns is None else columns
        return cls(
            {
                name: NumericReference.from_values(frame[name])
                if is_numeric(frame[name])
                else CategoricalReference.from_values(frame[name])
                for name in names
            },
            len(frame),
        )

    def merge(self, other: DriftReference, max_distinct: int = MAX_DISTINCT) -> DriftReference:
        """The reference of both tables (same columns) together."""
        if set(self.columns) != set(other.columns):
            raise ValueError("references with different columns cannot be merged")
        merged: dict[str, ColumnReference] = {}
        for name, mine in self.columns.items():
            theirs = other.columns[name]
            if type(mine) is not type(theirs):
                raise ValueError(f"column {name!r} is numeric in one part and not in the other")
            if isinstance(mine, NumericReference):
                merged[name] = mine.merge(theirs, max_distinct)  # type: ignore[arg-type]
            else:
                merged[name] = mine.merge(theirs)  # type: ignore[arg-type]
        return DriftReference(merged, self.rows + other.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what the model package stores as ``drift_reference.json``)."""
        return {
            "format": 1,
            "rows": self.rows,
            "columns": {name: ref.to_dict() for name, ref in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReference:
        """Read the JSON form back.

        Raises
        ------
        ValueError
            When ``data`` is not a drift reference.
        """
        try:
            columns: dict[str, ColumnReference] = {
                name: NumericReference.from_dict(ref)
                if ref["kind"] == "numeric"
                else CategoricalReference.from_dict(ref)
                for name, ref in data["columns"].items()
            }
            return cls(columns, int(data.get("rows", 0)))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a drift reference ({type(exc).__name__}: {exc})") from exc


def package_references(document: dict[str, Any]) -> tuple[DriftReference, DriftReference]:
    """``(features, outputs)`` of a model package's ``drift_reference.json``.

    Raises
    ------
    ValueError
        When the document is not a drift reference.
    """
    try:
        return DriftReference.from_dict(document["features"]), DriftReference.from_dict(
            document["outputs"]
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a drift reference ({type(exc).__name__}: {exc})") from exc


__all__ = [
    "CategoricalReference",
    "DriftReference",
    "NumericReference",
    "is_numeric",
    "package_references",
]
