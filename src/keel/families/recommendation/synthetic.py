"""Seeded synthetic interactions of a real recommender's shape, for scale tests.

Nothing larger than MovieLens 100k ships offline, so the scale envelope
(``bench/recommend_scale.py``) and the tests that need more rows generate them. The
generator keeps what makes a real interaction log hard and a time split meaningful:

- **item popularity is Zipf-distributed** (a few hits, a long tail);
- **user activity is log-normal** (most users rate a few items, some rate thousands);
- **items appear over time** and their appeal **decays with age**, so what is popular in
  the test period differs from the training period (popularity drifts);
- **tastes exist**: items belong to one of ``genres``; every user prefers one genre and
  takes most of their items from it, so personal models beat popularity, as on real data;
- users and items come with attribute tables (user ``segment``, ``age_band``; item
  ``genre``, ``available``), for filters, fairness and cold start.

:func:`generate_interactions` at ``scale=1.0`` has MovieLens-20M's shape (138,493 users,
26,744 items, about 20M interactions over 20 years). Every number is a function of the
seed: the same arguments give the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ML20M_USERS = 138_493
ML20M_ITEMS = 26_744
ML20M_INTERACTIONS = 20_000_263
START = 946_684_800  # 2000-01-01 UTC, seconds
YEAR = 365 * 86_400
BUCKETS = 200
"""Time is cut into this many periods; item appeal is fixed within one."""
ROUNDS = 6
"""Repeated user-item draws are drawn again at most this many times."""


@dataclass(frozen=True)
class Synthetic:
    """Interactions (``user_id``, ``item_id``, ``timestamp``, ``rating``) and attributes."""

    interactions: pd.DataFrame = field(repr=False)
    users: pd.DataFrame = field(repr=False)
    items: pd.DataFrame = field(repr=False)

    @property
    def shape(self) -> dict[str, int]:
        """Rows, users and items actually present in the interactions."""
        frame = self.interactions
        return {
            "interactions": len(frame),
            "users": int(frame["user_id"].nunique()),
            "items": int(frame["item_id"].nunique()),
        }


def ml20m_shape(scale: float) -> dict[str, int]:
    """Users, items and interactions of MovieLens-20M times ``scale`` (all at least 10)."""
    if not 0 < scale <= 10:
        raise ValueError(f"scale must be in (0, 10], got {scale}")
    return {
        "users": max(10, round(ML20M_USERS * scale)),
        "items": max(10, round(ML20M_ITEMS * scale**0.5)),  # catalogues grow slower than logs
        "interactions": max(100, round(ML20M_INTERACTIONS * scale)),
    }


def generate_interactions(
    users: int,
    items: int,
    interactions: int,
    seed: int = 0,
    *,
    years: float = 20.0,
    zipf: float = 0.9,
    genres: int = 20,
    taste: float = 0.75,
    half_life_years: float = 3.0,
) -> Synthetic:
    """Interactions of ``users`` × ``items``, about ``interactions`` rows, seeded.

    Parameters
    ----------
    users, items, interactions : int
        The population and the number of draws. A user draws an item at most once, so
        the frame holds slightly fewer rows than ``interactions`` (repeats dropped).
    seed : int
        Everything random comes from ``numpy.random.default_rng(seed)``.
    years : float
        The time span; users and items appear throughout it.
    zipf : float
        Exponent of item popularity (``weight ∝ rank ** -zipf``).
    genres : int
        Taste groups: each item has one genre, each user a favourite genre.
    taste : float
        Share of a user's draws taken from their favourite genre.
    half_life_years : float
        An item's appeal halves every this many years after it appears.
    """
    if min(users, items, genres) < 1 or interactions < 1:
        raise ValueError("users, items, genres and interactions must be at least 1")
    if not 0.0 <= taste <= 1.0:
        raise ValueError(f"taste must be in [0, 1], got {taste}")
    rng = np.random.default_rng(seed)
    span = years * YEAR
    # items: a base appeal (Zipf over a random order), a genre, a release time; a fifth
    # of the catalogue exists from the start, the rest appears uniformly over the span
    appeal = np.arange(1, items + 1, dtype=np.float64) ** -zipf
    appeal = appeal[rng.permutation(items)]
    genre = rng.integers(0, genres, size=items)
    released = np.where(rng.random(items) < 0.2, 0.0, rng.random(items) * span * 0.95)
    # users: a log-normal number of draws, a favourite genre, an active window
    activity = rng.lognormal(mean=0.0, sigma=1.1, size=users)
    counts = np.maximum(1, np.round(activity / activity.sum() * interactions)).astype(np.int64)
    counts = np.minimum(counts, max(1, items // 2))  # nobody has half the catalogue
    favourite = rng.integers(0, genres, size=users)
    joined = rng.random(users) * span * 0.97
    stays = np.minimum(span - joined, rng.exponential(span / 8, size=users) + 86_400.0)
    world = _World(
        rng, span, genres, appeal, genre, released, favourite, joined, stays, half_life_years * YEAR
    )
    # a user draws an item once: repeats are drawn again, with less taste each round
    # (a heavy user exhausts their genre), until (nearly) every user has their count
    frame = pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64)})
    frame["when"] = np.zeros(0)
    owed = counts
    for round_ in range(ROUNDS):
        owner = np.repeat(np.arange(users, dtype=np.int64), owed)
        if not len(owner):
            break
        item, when = world.draw(owner, taste * 0.5**round_)
        frame = pd.concat([frame, pd.DataFrame({"user": owner, "item": item, "when": when})])
        frame = frame.drop_duplicates(["user", "item"], keep="first")
        owed = np.maximum(0, counts - np.bincount(frame["user"], minlength=users))
    frame = pd.DataFrame(
        {
            "user_id": frame["user"].to_numpy() + 1,
            "item_id": frame["item"].to_numpy() + 1,
            "timestamp": (START + frame["when"].to_numpy()).astype(np.int64),
        }
    )
    # ratings: higher for the favourite genre, noisy
    liked = genre[frame["item_id"].to_numpy() - 1] == favourite[frame["user_id"].to_numpy() - 1]
    noise = rng.normal(0.0, 0.9, size=len(frame))
    frame["rating"] = np.clip(np.round(3.0 + 1.0 * liked + noise), 1, 5).astype(np.float64)
    frame = frame.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    user_table = pd.DataFrame(
        {
            "user_id": np.arange(1, users + 1),
            "segment": [f"g{g:02d}" for g in favourite],
            "age_band": rng.choice(["18-24", "25-34", "35-49", "50+"], size=users),
        }
    )
    item_table = pd.DataFrame(
        {
            "item_id": np.arange(1, items + 1),
            "genre": [f"g{g:02d}" for g in genre],
            "available": rng.random(items) < 0.9,
        }
    )
    return Synthetic(frame.reset_index(drop=True), user_table, item_table)


@dataclass
class _World:
    """The population's fixed traits; :meth:`draw` picks items at random times."""

    rng: np.random.Generator
    span: float
    genres: int
    appeal: np.ndarray
    genre: np.ndarray
    released: np.ndarray
    favourite: np.ndarray
    joined: np.ndarray
    stays: np.ndarray
    half_life: float = 3 * YEAR

    def draw(self, owner: np.ndarray, taste: float) -> tuple[np.ndarray, np.ndarray]:
        """One item and one time for each entry of ``owner`` (a user index)."""
        rng, genres, span = self.rng, self.genres, self.span
        when = self.joined[owner] + rng.random(len(owner)) * self.stays[owner]
        bucket = np.minimum((when / span * BUCKETS).astype(np.int64), BUCKETS - 1)
        in_taste = rng.random(len(owner)) < taste
        # one draw per (period, favourite genre or "any genre") group, from that
        # period's appeal: base appeal halved every half-life since release
        key = bucket * (genres + 1) + np.where(in_taste, self.favourite[owner], genres)
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
        ends = np.r_[starts[1:], len(order)]
        chosen = np.empty(len(owner), dtype=np.int64)
        pools = [np.flatnonzero(self.genre == g) for g in range(genres)]
        pools.append(np.arange(len(self.genre)))
        half_life = self.half_life
        for s, e in zip(starts, ends, strict=True):
            part = order[s:e]
            period, wanted = divmod(int(key[part[0]]), genres + 1)
            pool = pools[wanted] if len(pools[wanted]) else pools[-1]  # an empty genre
            age = (period + 0.5) * span / BUCKETS - self.released[pool]
            weight = np.where(
                age >= 0, self.appeal[pool] * 0.5 ** (np.maximum(age, 0) / half_life), 0.0
            )
            if weight.sum() <= 0:  # nothing of that genre released yet: its oldest items
                weight = (self.released[pool] == self.released[pool].min()).astype(np.float64)
            cumulative = np.cumsum(weight)
            draws = rng.random(len(part)) * cumulative[-1]
            at = np.minimum(np.searchsorted(cumulative, draws, side="right"), len(pool) - 1)
            chosen[part] = pool[at]
        return chosen, np.maximum(when, self.released[chosen])
