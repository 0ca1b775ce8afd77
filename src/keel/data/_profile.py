"""Per-column statistics in one pass, mergeable across chunks: the drift reference.

A :class:`Profile` is built chunk by chunk (``Profile.empty(schema)`` then
``profile.update(chunk)`` for each chunk) or from a whole frame, and two profiles of the
same schema merge exactly (``a.merge(b)``) — counts, sums, extremes and histogram bins
add up — so a profile of a huge file, of many monitoring batches, or of data split over
workers equals the profile of the concatenated data.

Numeric histograms use fixed bin edges taken from the schema's range (inferred on the
reference data), plus an underflow and an overflow bin, so that a later batch is binned
on the same edges. Quantiles are read off the histogram by linear interpolation: exact
to within one bin width (range / 50).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.data._schema import ColumnSchema, Schema

PROFILE_VERSION = 1
NUMERIC_BINS = 50
MAX_TRACKED_CATEGORIES = 1_000
OTHER = "(other)"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class NumericStats:
    """Mergeable statistics of one numeric column (Chan et al.'s parallel variance)."""

    edges: list[float]
    count: int = 0
    missing: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    bins: list[int] = field(default_factory=list)  # underflow, NUMERIC_BINS bins, overflow

    def __post_init__(self) -> None:
        if not self.bins:
            self.bins = [0] * (len(self.edges) + 1)

    def update(self, values: pd.Series) -> None:
        """Add a chunk of values."""
        numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
        finite = numbers[np.isfinite(numbers)]
        self.missing += int(len(numbers) - len(finite))
        if len(finite) == 0:
            return
        chunk = NumericStats(edges=self.edges)
        chunk.count = len(finite)
        chunk.mean = float(finite.mean())
        chunk.m2 = float(((finite - chunk.mean) ** 2).sum())
        chunk.minimum, chunk.maximum = float(finite.min()), float(finite.max())
        chunk.bins = _bin_counts(finite, self.edges).tolist()
        self._absorb(chunk)

    def _absorb(self, other: NumericStats) -> None:
        total = self.count + other.count
        if other.count:
            delta = other.mean - self.mean
            self.mean += delta * other.count / total
            self.m2 += other.m2 + delta**2 * self.count * other.count / total
        self.count = total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.bins = [a + b for a, b in zip(self.bins, other.bins, strict=True)]

    def merge(self, other: NumericStats) -> NumericStats:
        """Return the statistics of both chunks together."""
        if self.edges != other.edges:
            raise ValueError("cannot merge numeric statistics with different bin edges")
        merged = NumericStats(edges=list(self.edges))
        for part in (self, other):
            merged.missing += part.missing
            copy = NumericStats(
                edges=part.edges,
                count=part.count,
                mean=part.mean,
                m2=part.m2,
                minimum=part.minimum,
                maximum=part.maximum,
                bins=list(part.bins),
            )
            merged._absorb(copy)
        return merged

    @property
    def std(self) -> float:
        """Sample standard deviation (NaN below two values)."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else float("nan")

    def quantile(self, q: float) -> float:
        """Approximate quantile by interpolation inside the histogram bins."""
        if self.count == 0:
            return float("nan")
        target = q * self.count
        lows = [self.minimum, *self.edges]
        highs = [*self.edges, self.maximum]
        seen = 0
        for count, low, high in zip(self.bins, lows, highs, strict=True):
            if count and seen + count >= target:
                low, high = max(low, self.minimum), min(high, self.maximum)
                return float(low + (high - low) * (target - seen) / count)
            seen += count
        return float(self.maximum)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with derived mean/std/quantiles for people."""
        return {
            "type": "numeric",
            "count": self.count,
            "missing": self.missing,
            "mean": _finite(self.mean if self.count else float("nan")),
            "std": _finite(self.std),
            "min": _finite(self.minimum),
            "max": _finite(self.maximum),
            "quantiles": {str(q): _finite(self.quantile(q)) for q in QUANTILES},
            "edges": self.edges,
            "bins": self.bins,
            "m2": self.m2,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericStats:
        """Read :meth:`to_dict`'s form."""
        return cls(
            edges=list(data["edges"]),
            count=int(data["count"]),
            missing=int(data["missing"]),
            mean=float(data["mean"]) if data["mean"] is not None else 0.0,
            m2=float(data["m2"]),
            minimum=math.inf if data["min"] is None else float(data["min"]),
            maximum=-math.inf if data["max"] is None else float(data["max"]),
            bins=list(data["bins"]),
        )


@dataclass
class CategoricalStats:
    """Mergeable value counts of one string/boolean column (capped, rest in "(other)")."""

    counts: dict[str, int] = field(default_factory=dict)
    count: int = 0
    missing: int = 0

    def update(self, values: pd.Series) -> None:
        """Add a chunk of values."""
        self.missing += int(values.isna().sum())
        counted = values.dropna().astype(str).value_counts()
        self.count += int(counted.sum())
        self._add(counted.to_dict())

    def _add(self, counts: dict[str, int]) -> None:
        for value, n in counts.items():
            key = str(value)
            if key in self.counts or len(self.counts) < MAX_TRACKED_CATEGORIES:
                self.counts[key] = self.counts.get(key, 0) + int(n)
            else:
                self.counts[OTHER] = self.counts.get(OTHER, 0) + int(n)

    def merge(self, other: CategoricalStats) -> CategoricalStats:
        """Return the counts of both chunks together."""
        merged = CategoricalStats(counts=dict(self.counts), count=self.count, missing=self.missing)
        merged.count += other.count
        merged.missing += other.missing
        merged._add(other.counts)
        return merged

    def top(self, n: int = 10) -> list[tuple[str, int, float]]:
        """The ``n`` most frequent values with counts and frequencies."""
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(v, c, c / self.count if self.count else 0.0) for v, c in ordered]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "type": "categorical",
            "count": self.count,
            "missing": self.missing,
            "distinct": len(self.counts),
            "top": [{"value": v, "count": c, "frequency": round(f, 6)} for v, c, f in self.top()],
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalStats:
        """Read :meth:`to_dict`'s form."""
        return cls(
            counts={str(k): int(v) for k, v in data["counts"].items()},
            count=int(data["count"]),
            missing=int(data["missing"]),
        )


Stats = NumericStats | CategoricalStats


@dataclass
class Profile:
    """Statistics of every profiled column of a dataset."""

    rows: int
    columns: dict[str, Stats]

    @classmethod
    def empty(cls, schema: Schema) -> Profile:
        """A profile of no rows, ready for :meth:`update` with chunks."""
        columns: dict[str, Stats] = {}
        for column in schema.columns:
            if column.role in ("id", "ignored") or column.kind == "datetime":
                continue  # only what the model reads (and the target) is a drift reference
            if column.kind in ("integer", "float"):
                columns[column.name] = NumericStats(edges=bin_edges(column))
            else:
                columns[column.name] = CategoricalStats()
        return cls(rows=0, columns=columns)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, schema: Schema) -> Profile:
        """Profile a whole frame (one pass over each column)."""
        profile = cls.empty(schema)
        profile.update(frame)
        return profile

    def update(self, chunk: pd.DataFrame) -> None:
        """Add a chunk of rows (columns absent from the chunk are left as they are)."""
        self.rows += len(chunk)
        for name, stats in self.columns.items():
            if name in chunk.columns:
                stats.update(chunk[name])

    def merge(self, other: Profile) -> Profile:
        """The profile of both datasets together (same schema)."""
        if set(self.columns) != set(other.columns):
            raise ValueError("cannot merge profiles of different columns")
        return Profile(
            rows=self.rows + other.rows,
            columns={n: s.merge(other.columns[n]) for n, s in self.columns.items()},  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``profile.json``)."""
        return {
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "columns": {n: s.to_dict() for n, s in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Read :meth:`to_dict`'s form."""
        columns: dict[str, Stats] = {}
        for name, item in data["columns"].items():
            reader = NumericStats if item["type"] == "numeric" else CategoricalStats
            columns[name] = reader.from_dict(item)
        return cls(rows=int(data["rows"]), columns=columns)


def _bin_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Count values per bin: underflow, each equal-width bin, overflow.

    The right edge of the last bin belongs to it. Equal widths make the bin of a
    value plain arithmetic, with no search per value.
    """
    n_bins = len(edges) - 1
    low, high = edges[0], edges[-1]
    position = np.floor((values - low) * (n_bins / (high - low))).astype(np.int64) + 1
    np.clip(position, 0, n_bins + 1, out=position)
    position[values < low] = 0
    position[values > high] = n_bins + 1
    position[values == high] = n_bins
    return np.bincount(position, minlength=n_bins + 2)


def bin_edges(column: ColumnSchema, bins: int = NUMERIC_BINS) -> list[float]:
    """Fixed, equal-width bin edges over the column's range in the schema."""
    low = column.minimum if column.minimum is not None else 0.0
    high = column.maximum if column.maximum is not None else 1.0
    if high <= low:
        high = low + 1.0
    return [float(x) for x in np.linspace(low, high, bins + 1)]


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
