"""What a recommender will cost before it trains: seconds and bytes from the data's shape.

A candidate that would not fit the machine (its estimated peak memory over
:data:`MEMORY_SHARE` of what the kernel says is available) or the run's budget is
**skipped with its estimate in the report** — never an out-of-memory kill, never a
fixed item count. The formulas follow each algorithm's work:

- ``ease``: a dense items × items Gram matrix and its inverse — memory ``2 · 8 · n²``
  bytes plus the sparse product, time ``∝ n³`` (the inverse) plus the co-occurring pairs;
- ``item_knn``: the co-occurring item pairs (``Σ_u h_u²`` for user history sizes
  ``h_u``) and a dense block of at most ``KNN_BLOCK_CELLS`` cells per step;
- ``als``: ``iterations × interactions × √factors`` (implicit's conjugate-gradient
  solver, one thread), factors for every user and item;
- ``bpr``: ``iterations × interactions × factors`` (one SGD step per interaction);
- scoring the full catalogue for ``U`` users: ``U × items`` cells.

The constants were measured on the 2-core reference machine (``bench/recommend_scale.py``
prints every trial's estimate beside its measured seconds); each run then corrects them
by the ratio of measured to estimated seconds of its trials so far (:func:`calibrated`),
so a faster or slower machine is accounted for after one trial.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keel.families.recommendation.models import DEFAULT_RECOMMENDER_PARAMS, KNN_BLOCK_CELLS

MEMORY_SHARE = 0.8
"""A candidate may use at most this share of the memory available when the run starts."""
ALS_SECONDS = 2.6e-8  # per iteration × interaction × √factor
BPR_SECONDS = 6.5e-9  # per iteration × interaction × factor
PAIR_SECONDS = 1.0e-8  # per co-occurring (user, item, item) triple of the sparse product
CELL_SECONDS = 2.5e-8  # per dense cell: similarity blocks, scoring, top-K
INVERSE_SECONDS = 7.0e-11  # per n³ of a dense inverse (LAPACK, one thread)
BASE_BYTES = 200 * 2**20  # what a fit needs besides its own arrays
PREPARE_SECONDS = 5e-7  # per interaction: ids to the 0/1 matrix (once per frame)
RECORD_SECONDS = 1.5e-6  # per interaction: the snapshot, the package and MLflow's records


@dataclass(frozen=True)
class Shape:
    """The size of the interactions a model learns from.

    ``pairs`` is ``Σ_u h_u²`` over users' history sizes: the work of an item–item
    product.
    """

    users: int
    items: int
    interactions: int
    pairs: float

    @classmethod
    def of(cls, frame: Any, user: str = "user", item: str = "item") -> Shape:
        """The shape of an interaction frame (one row per interaction).

        A user who had an item twice counts twice: the estimate errs on the high side
        rather than pay for de-duplicating millions of rows.
        """
        per_user = frame[user].value_counts().to_numpy(dtype=np.float64)
        return cls(
            users=len(per_user),
            items=int(frame[item].nunique()),
            interactions=len(frame),
            pairs=float((per_user**2).sum()),
        )

    def scaled(self, share: float) -> Shape:
        """About this shape with ``share`` times the users and interactions."""
        return Shape(
            max(1, round(self.users * share)),
            self.items,
            max(1, round(self.interactions * share)),
            self.pairs * share,
        )


@dataclass(frozen=True)
class Estimate:
    """Seconds and peak bytes of one fit, and the formula that gave them."""

    name: str
    seconds: float
    bytes: float
    basis: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the report's skipped candidates, the tuning record)."""
        out = asdict(self)
        out["seconds"] = round(self.seconds, 1)
        out["megabytes"] = round(self.bytes / 2**20)
        del out["bytes"]
        return out


def _matrix_bytes(shape: Shape) -> float:
    # CSR + CSC copies of the 0/1 matrix: float32 values, int32 indices, twice
    return 2 * 8.0 * shape.interactions + 8.0 * (shape.users + shape.items)


def estimate_fit(name: str, params: dict[str, Any] | None, shape: Shape) -> Estimate:
    """Seconds and peak bytes of fitting ``name`` with ``params`` on ``shape``."""
    p = {**DEFAULT_RECOMMENDER_PARAMS.get(name, {}), **(params or {})}
    n, nnz = float(shape.items), float(shape.interactions)
    base = BASE_BYTES + _matrix_bytes(shape)
    if name == "ease":
        seconds = INVERSE_SECONDS * n**3 + PAIR_SECONDS * shape.pairs + CELL_SECONDS * n * n
        memory = base + 2 * 8.0 * n * n + 12.0 * min(shape.pairs, n * n)
        basis = f"inverse of a {int(n):,} x {int(n):,} matrix: 2 x 8 x n^2 bytes, n^3 time"
    elif name == "item_knn":
        keep = min(int(p["neighbours"]), int(n))
        seconds = PAIR_SECONDS * shape.pairs + CELL_SECONDS * n * n
        block = min(n * n, float(KNN_BLOCK_CELLS))
        memory = base + 3 * 8.0 * block + 16.0 * n * keep + 12.0 * min(shape.pairs, n * n)
        basis = f"{shape.pairs:.3g} co-occurring pairs, {int(n):,}^2 similarity cells"
    elif name in ("als", "bpr"):
        f, it = int(p["factors"]), int(p["iterations"])
        per = ALS_SECONDS * math.sqrt(f) if name == "als" else BPR_SECONDS * f
        seconds = it * nnz * per
        memory = base + 3 * 4.0 * f * (shape.users + shape.items)
        basis = f"{it} iterations x {int(nnz):,} interactions x {f} factors"
    else:  # baselines: one pass over the interactions
        seconds = 5e-8 * nnz
        memory = base
        basis = "one pass over the interactions"
    return Estimate(name, seconds, memory, basis)


def scoring_seconds(users: int, items: int) -> float:
    """Seconds to rank the full catalogue for ``users`` (one evaluation of one model)."""
    return CELL_SECONDS * float(users) * float(items)


def prepare_seconds(shape: Shape) -> float:
    """Seconds to turn a frame of ``shape`` into the matrix the models learn from."""
    return PREPARE_SECONDS * shape.interactions


def record_seconds(shape: Shape) -> float:
    """Seconds the stages after evaluation need (snapshot, register, report)."""
    return 10.0 + RECORD_SECONDS * shape.interactions


def calibrated(estimate: float, measured: list[tuple[float, float]]) -> float:
    """``estimate`` corrected by the median ratio of (measured, estimated) seconds so far."""
    ratios = [m / e for m, e in measured if e > 0 and m > 0]
    return estimate * (float(np.median(ratios)) if ratios else 1.0)


def available_bytes() -> float | None:
    """Memory the kernel says is available now (``None`` where it does not say)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def too_big(estimate: Estimate, available: float | None) -> str | None:
    """Why ``estimate`` does not fit the machine's memory (``None``: it fits)."""
    if available is None or estimate.bytes <= MEMORY_SHARE * available:
        return None
    return (
        f"needs about {estimate.bytes / 2**30:.1f} GB ({estimate.basis}); "
        f"{MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GB available is"
        f" {MEMORY_SHARE * available / 2**30:.1f} GB"
    )
