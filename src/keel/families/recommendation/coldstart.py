"""Cold start from attributes: a new user gets the popularity of their segment.

A user with no history gets a popularity list — but not necessarily the *global* one.
With ``recommend.cold_start.user_attributes`` (columns of the ``users:`` table, e.g.
``[age_band, occupation]``), a user's **segment** is their combination of those
values, and a cold user gets the items most users *of their segment* had in training.
A segment with fewer than ``min_users`` training users falls back to the global list
(a popularity over a handful of people is noise). The attributes come from the users
table (a user in the table who has no training history) or from the request
(``user_attributes`` on ``POST /recommend``). Every answer says which segment it used.

The segments are plain arrays in the package: their keys, their popularity over the
catalogue (float32), and the segment of each user of the users table who has no
training history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MAX_SEGMENTS = 2000
"""At most this many segments are kept (the largest): segments × items floats each."""
GLOBAL = "(all users)"


def segment_key(values: Mapping[str, Any], attributes: Sequence[str]) -> str | None:
    """``"age_band=25-34|gender=F"`` for ``values``; ``None`` when one is missing."""
    parts = []
    for name in attributes:
        value = values.get(name)
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
            return None
        parts.append(f"{name}={value}")
    return "|".join(parts)


@dataclass
class Segments:
    """Popularity per user segment, and the segment of users known only by attributes."""

    attributes: list[str] = field(default_factory=list)
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    popularity: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    user_segment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self._key_index = pd.Index(np.asarray(self.keys).astype(str))
        self._user_index = pd.Index(np.asarray(self.users).astype(str))

    @property
    def active(self) -> bool:
        """Whether any segment is kept."""
        return len(self.keys) > 0

    @classmethod
    def fit(
        cls,
        matrix: Any,
        user_ids: np.ndarray,
        table: pd.DataFrame | None,
        attributes: Sequence[str],
        min_users: int,
    ) -> Segments:
        """Segments of the training users (rows of ``matrix``) from ``table`` (by user id)."""
        attributes = list(attributes)
        if table is None or not attributes or not len(user_ids):
            return cls(attributes)
        aligned = table.reindex(pd.Index(np.asarray(user_ids).astype(str)))
        keys = _keys(aligned, attributes)
        known = keys.notna().to_numpy()
        codes, uniques = pd.factorize(keys[known])
        sizes = np.bincount(codes, minlength=len(uniques))
        kept = np.flatnonzero(sizes >= max(1, min_users))
        kept = kept[np.argsort(-sizes[kept], kind="stable")][:MAX_SEGMENTS]
        if not len(kept):
            return cls(attributes)
        binary = matrix.tocsr(copy=True)
        binary.data[:] = 1.0
        rows = np.flatnonzero(known)
        remap = np.full(len(uniques), -1, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        segment_of_row = remap[codes]
        pick = segment_of_row >= 0
        import scipy.sparse as sp

        member = sp.csr_matrix(
            (np.ones(int(pick.sum()), dtype=np.float32), (segment_of_row[pick], rows[pick])),
            shape=(len(kept), len(user_ids)),
        )
        popularity = np.asarray((member @ binary).todense(), dtype=np.float32)
        others = table.index.difference(pd.Index(np.asarray(user_ids).astype(str)))
        other_keys = _keys(table.loc[others], attributes)
        index = pd.Index(np.asarray(uniques[kept]).astype(str))
        segment = index.get_indexer(other_keys.fillna("\x00"))
        has = segment >= 0
        return cls(
            attributes,
            index.to_numpy(dtype=str),
            popularity,
            np.asarray(others[has]).astype(str),
            segment[has].astype(np.int64),
        )

    def of_users(
        self, user_ids: Sequence[Any], sent: Sequence[Mapping[str, Any] | None] | None = None
    ) -> np.ndarray:
        """Segment row of each user (-1: global): attributes sent first, then the table."""
        out = np.full(len(user_ids), -1, dtype=np.int64)
        if not self.active:
            return out
        if len(self.users):
            found = self._user_index.get_indexer(pd.Index([str(u) for u in user_ids]))
            out[found >= 0] = self.user_segment[found[found >= 0]]
        for i, values in enumerate(sent or []):
            if values:
                key = segment_key(values, self.attributes)
                out[i] = self._key_index.get_loc(key) if key in self._key_index else -1
        return out

    def name(self, row: int) -> str:
        """The segment's key, or :data:`GLOBAL`."""
        return str(self.keys[row]) if row >= 0 else GLOBAL

    def arrays(self) -> dict[str, np.ndarray]:
        """What the package stores (no pickle)."""
        return {
            "segments.keys": np.asarray(self.keys).astype(str),
            "segments.popularity": self.popularity,
            "segments.users": np.asarray(self.users).astype(str),
            "segments.user_segment": self.user_segment,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], attributes: list[str]) -> Segments:
        """The inverse of :meth:`arrays` (an older package: no segments)."""
        if "segments.keys" not in arrays:
            return cls(attributes)
        return cls(
            attributes,
            arrays["segments.keys"],
            arrays["segments.popularity"],
            arrays["segments.users"],
            arrays["segments.user_segment"],
        )


def _keys(table: pd.DataFrame, attributes: list[str]) -> pd.Series:
    parts = []
    for name in attributes:
        values = table[name]
        text = values.astype("string")
        parts.append((name + "=" + text).where(values.notna() & (text != ""), other=pd.NA))
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "|" + part
    return joined.astype(object).where(joined.notna(), None)
