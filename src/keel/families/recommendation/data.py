"""User–item interactions: checked, profiled and split in time without leakage.

A recommendation project's rows are interactions (a user, an item, a time, maybe a
rating), with optional tables of user attributes (age, gender: the sensitive
features) and item attributes (genre). :func:`prepare_interactions` turns the
configured tables into :class:`Interactions` (ids as strings, time as integer
seconds, relevance decided), raising one :class:`DataError` line for anything that
cannot be used and *reporting* what can be used with care (duplicates dropped, ids
missing from the attribute tables, users and items with little history).
:func:`split_interactions` cuts train / validation / test by one of three protocols
and marks test users with no training history as cold-start users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import DataError, did_you_mean

USER, ITEM, TIME, RATING, RELEVANT = "user", "item", "time", "rating", "relevant"
SHORT_HISTORY = 5
"""Users or items with fewer interactions than this are reported as thin history."""
HEAD_SHARE = 0.2
"""The most popular fifth of the items is the popularity *head*; the rest the tail."""


@dataclass(frozen=True)
class Interactions:
    """Interactions in Keel's columns, with the attribute tables and the checks' report.

    ``frame`` has ``user`` and ``item`` (strings), ``time`` (integer seconds),
    ``rating`` (float, NaN without ratings) and ``relevant`` (bool), sorted by time.
    ``users`` / ``items`` are indexed by id (strings) or ``None``.
    """

    frame: pd.DataFrame = field(repr=False)
    users: pd.DataFrame | None = field(default=None, repr=False)
    items: pd.DataFrame | None = field(default=None, repr=False)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        """Number of interactions."""
        return len(self.frame)


def _columns(frame: pd.DataFrame, wanted: dict[str, str], label: str) -> None:
    present = [str(c) for c in frame.columns]
    for key, column in wanted.items():
        if column not in present:
            raise DataError(
                f"{label}: no column {column!r} (keel.yaml {key}){did_you_mean(column, present)};"
                f" columns are {', '.join(present[:20])}"
            )


def _ids(values: pd.Series, label: str, column: str) -> pd.Series:
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{label}: row {row + 1}: column {column!r} is empty ({int(missing.sum())} rows);"
            " every interaction needs a user and an item: drop or fill those rows"
        )
    if pd.api.types.is_float_dtype(values) and (values == values.round()).all():
        values = values.astype("int64")
    return values.astype(str)


def _seconds(values: pd.Series, label: str, column: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
    else:
        try:
            stamps = pd.to_datetime(values, utc=True, errors="raise", format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"{label}: column {column!r} (time_column) is neither numbers (epoch seconds)"
                f" nor dates: {str(exc).splitlines()[0][:120]}"
            ) from None
        numbers = stamps.astype("int64") / 1e9 if len(stamps) else stamps.astype("float64")
        numbers = pd.Series(np.asarray(numbers, dtype="float64"), index=values.index)
    bad = ~np.isfinite(numbers.to_numpy())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{label}: row {row + 1}: column {column!r} (time_column) is empty or not a"
            f" time ({int(bad.sum())} rows); every interaction needs a time"
        )
    return numbers.round().astype("int64")


def _table(
    frame: pd.DataFrame | None, column: str, label: str, keep: list[str]
) -> pd.DataFrame | None:
    if frame is None:
        return None
    if column not in frame.columns:
        raise DataError(
            f"{label}: no column {column!r} to join on{did_you_mean(column, map(str, frame))};"
            f" the table needs the interactions' {column} column (columns are"
            f" {', '.join(map(str, list(frame.columns)[:20]))})"
        )
    _columns(frame, {f"sensitive_features / item_attribute {c}": c for c in keep}, label)
    ids = _ids(frame[column], label, column)
    table = frame.assign(**{column: ids}).drop_duplicates(column, keep="last")
    return table.set_index(column)


def prepare_interactions(
    frame: pd.DataFrame,
    config: Any,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    label: str = "interactions",
) -> Interactions:
    """Check the interaction table (and attribute tables); return them in Keel's form.

    Raises ``DataError`` (one line naming the table, column or row and the fix) for a
    missing column, an empty table, empty ids or times, non-numeric ratings, or an
    attribute table without the id column. Duplicated user–item–time rows are dropped
    and reported; so are ids missing from the attribute tables.
    """
    roles = {"user_column": config.user_column, "item_column": config.item_column}
    roles["time_column"] = config.time_column
    if config.rating_column:
        roles["rating_column"] = config.rating_column
    _columns(frame, roles, label)
    if frame.empty:
        raise DataError(f"{label}: the table has no rows; a recommender needs interactions")
    out = pd.DataFrame(
        {
            USER: _ids(frame[config.user_column], label, config.user_column).to_numpy(),
            ITEM: _ids(frame[config.item_column], label, config.item_column).to_numpy(),
            TIME: _seconds(frame[config.time_column], label, config.time_column).to_numpy(),
        }
    )
    if config.rating_column:
        ratings = pd.to_numeric(frame[config.rating_column], errors="coerce")
        bad = ratings.isna() & frame[config.rating_column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{label}: row {row + 1}: column {config.rating_column!r} (rating_column) is"
                f" {frame[config.rating_column].iloc[row]!r}, not a number"
            )
        out[RATING] = ratings.to_numpy(dtype="float64")
    else:
        out[RATING] = np.nan
    if config.relevant_from is not None:
        out[RELEVANT] = (out[RATING] >= config.relevant_from).to_numpy()
    else:
        out[RELEVANT] = True
    before = len(out)
    out = out.drop_duplicates([USER, ITEM, TIME], keep="last")
    duplicates = before - len(out)
    out = out.sort_values([TIME, USER, ITEM], kind="stable").reset_index(drop=True)
    sensitive = list(getattr(config, "sensitive_features", []) or [])
    user_table = _table(users, config.user_column, "users table", sensitive)
    attribute = [config.item_attribute] if getattr(config, "item_attribute", None) else []
    item_table = _table(items, config.item_column, "items table", attribute)
    report = {
        "rows": before,
        "duplicates_dropped": duplicates,
        "users_missing_from_users_table": _missing(out[USER], user_table),
        "items_missing_from_items_table": _missing(out[ITEM], item_table),
        **thin_history(out),
    }
    if not out[RELEVANT].any():
        raise DataError(
            f"{label}: no interaction is relevant (no {config.rating_column} of"
            f" {config.relevant_from} or more); lower relevant_from"
        )
    return Interactions(out, user_table, item_table, report)


def _missing(ids: pd.Series, table: pd.DataFrame | None) -> int | None:
    if table is None:
        return None
    return int((~ids.drop_duplicates().isin(table.index)).sum())


def thin_history(frame: pd.DataFrame) -> dict[str, int]:
    """How many users and items have fewer than :data:`SHORT_HISTORY` interactions."""
    per_user = frame.groupby(USER, sort=False).size()
    per_item = frame.groupby(ITEM, sort=False).size()
    return {
        "users_with_short_history": int((per_user < SHORT_HISTORY).sum()),
        "items_with_short_history": int((per_item < SHORT_HISTORY).sum()),
        "short_history_threshold": SHORT_HISTORY,
    }


def _summary(counts: pd.Series) -> dict[str, float]:
    values = counts.to_numpy(dtype="float64")
    q = np.quantile(values, [0.25, 0.5, 0.75, 0.95]) if len(values) else [math.nan] * 4
    return {
        "min": float(values.min()) if len(values) else math.nan,
        "p25": float(q[0]),
        "median": float(q[1]),
        "p75": float(q[2]),
        "p95": float(q[3]),
        "max": float(values.max()) if len(values) else math.nan,
        "mean": float(values.mean()) if len(values) else math.nan,
    }


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of item popularity (0: every item equally popular; →1: one item)."""
    values = np.sort(np.asarray(counts, dtype="float64"))
    n = len(values)
    if n == 0 or values.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * ranks - n - 1) @ values / (n * values.sum()))


def profile_interactions(data: Interactions) -> dict[str, Any]:
    """Interactions per user and per item, the popularity long tail, the time span."""
    frame = data.frame
    per_user = frame.groupby(USER, sort=False).size()
    per_item = frame.groupby(ITEM, sort=False).size().sort_values(ascending=False)
    head = max(1, math.ceil(HEAD_SHARE * len(per_item)))
    first, last = int(frame[TIME].min()), int(frame[TIME].max())
    ratings = frame[RATING].dropna()
    return {
        "interactions": len(frame),
        "users": int(per_user.size),
        "items": int(per_item.size),
        "density": float(len(frame) / max(1, per_user.size * per_item.size)),
        "relevant_share": float(frame[RELEVANT].mean()),
        "per_user": _summary(per_user),
        "per_item": _summary(per_item),
        "head_items": head,
        "head_share_of_interactions": float(per_item.iloc[:head].sum() / len(frame)),
        "popularity_gini": gini(per_item.to_numpy()),
        "popularity_curve": [int(v) for v in per_item.to_numpy()[:: max(1, len(per_item) // 100)]],
        "first_time": pd.Timestamp(first, unit="s").isoformat(),
        "last_time": pd.Timestamp(last, unit="s").isoformat(),
        "days": round((last - first) / 86_400, 2),
        "ratings": {str(k): int(v) for k, v in ratings.value_counts().sort_index().items()},
    }


# --- splits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InteractionSplits:
    """Train, validation and test interactions, cut by one protocol.

    ``fit`` is train + validation (what the shipped model learns from); ``cutoffs``
    are the times of the global protocol (``None`` for per-user protocols).
    """

    strategy: str
    train: pd.DataFrame = field(repr=False)
    validation: pd.DataFrame = field(repr=False)
    test: pd.DataFrame = field(repr=False)
    cutoffs: dict[str, int | None] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def fit(self) -> pd.DataFrame:
        """Train and validation together, in time order (made once: 18M rows take 10 s)."""
        both = pd.concat([self.train, self.validation], ignore_index=True)
        return both.sort_values([TIME, USER, ITEM], kind="stable").reset_index(drop=True)

    def __getstate__(self) -> dict[str, Any]:
        # the stage store keeps the four fields, not the cached union (made again on use)
        return {k: v for k, v in self.__dict__.items() if k != "fit"}


def _global_cut(frame: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    times = frame[TIME].to_numpy()
    if not len(times):
        return frame, frame, 0
    cutoff = int(np.quantile(times, 1.0 - share, method="higher"))
    later = times >= cutoff
    if later.all():  # every interaction at one time: nothing before the cut-off
        return frame.iloc[:0], frame, cutoff
    return frame[~later], frame[later], cutoff


def _user_cut(frame: pd.DataFrame, share: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    ordered = frame.sort_values([USER, TIME, ITEM], kind="stable")
    position = ordered.groupby(USER, sort=False).cumcount(ascending=False).to_numpy()
    size = ordered.groupby(USER, sort=False)[ITEM].transform("size").to_numpy()
    # the last `share` (at least one) of each user's interactions; one kept for training
    held = np.ones_like(size) if share is None else np.maximum(1, np.floor(size * share))
    later = (position < held) & (size >= 2)
    return ordered[~later], ordered[later]


def _cut(frame: pd.DataFrame, strategy: str, share: float) -> tuple[Any, Any, int | None]:
    if strategy == "global_time":
        return _global_cut(frame, share)
    before, after = _user_cut(frame, None if strategy == "leave_last_out" else share)
    return before, after, None


def split_interactions(data: Interactions, strategy: str, validation: float, test: float):
    """Cut test from the whole, then validation from what is left, by ``strategy``.

    ``global_time``: one cut-off time for everyone (interactions at or after it are
    held out). ``user_time``: each user's last share of interactions (users with one
    interaction stay in training). ``leave_last_out``: each user's last interaction.
    Held-out interactions with an item the user already had before are dropped (it
    cannot be recommended again); so are held-out users with nothing relevant.
    Raises ``DataError`` when the test or validation period is empty.
    """
    frame = data.frame
    rest, test_rows, test_cut = _cut(frame, strategy, test)
    share = validation / (1.0 - test) if strategy != "leave_last_out" else validation
    train, validation_rows, validation_cut = _cut(rest, strategy, share)
    for name, rows in (("test", test_rows), ("validation", validation_rows), ("train", train)):
        if rows.empty:
            raise DataError(
                f"interactions: the {name} period of split.strategy {strategy} is empty"
                f" ({len(frame)} interactions"
                + (
                    f" between {pd.Timestamp(int(frame[TIME].min()), unit='s')} and"
                    f" {pd.Timestamp(int(frame[TIME].max()), unit='s')}"
                    if len(frame)
                    else ""
                )
                + "); use more data or change split.test / split.validation"
            )
    validation_rows, dropped_validation = _unseen(validation_rows, train)
    test_rows, dropped_test = _unseen(test_rows, pd.concat([train, validation_rows]))
    order = [TIME, USER, ITEM]
    splits = InteractionSplits(
        strategy,
        train.sort_values(order, kind="stable").reset_index(drop=True),
        validation_rows.sort_values(order, kind="stable").reset_index(drop=True),
        test_rows.sort_values(order, kind="stable").reset_index(drop=True),
        {"validation": validation_cut, "test": test_cut},
    )
    known = set(splits.fit[USER])
    test_users = test_rows.loc[test_rows[RELEVANT], USER].drop_duplicates()
    cold = int((~test_users.isin(known)).sum())
    report = {
        "strategy": strategy,
        "train": len(splits.train),
        "validation": len(splits.validation),
        "test": len(splits.test),
        "repeats_dropped": {"validation": dropped_validation, "test": dropped_test},
        "test_users": len(test_users),
        "cold_start_test_users": cold,
        "warm_test_users": int(len(test_users) - cold),
    }
    for name, cut in splits.cutoffs.items():
        if cut is not None:
            report[f"{name}_from"] = pd.Timestamp(cut, unit="s").isoformat()
    if not len(test_users):
        raise DataError(
            "interactions: no test user has a relevant interaction in the test period;"
            " lower relevant_from or raise split.test"
        )
    return InteractionSplits(
        splits.strategy, splits.train, splits.validation, splits.test, splits.cutoffs, report
    )


def _unseen(later: pd.DataFrame, before: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    seen = pd.MultiIndex.from_frame(before[[USER, ITEM]])
    again = pd.MultiIndex.from_frame(later[[USER, ITEM]]).isin(seen)
    return later[~again], int(again.sum())


def leaked(splits: InteractionSplits) -> list[str]:
    """Every way test-period interactions reached training (empty: none did)."""
    problems = []
    fit = splits.fit
    keys = pd.MultiIndex.from_frame(fit[[USER, ITEM, TIME]])
    shared = pd.MultiIndex.from_frame(splits.test[[USER, ITEM, TIME]]).isin(keys)
    if shared.any():
        problems.append(f"{int(shared.sum())} test interactions are also in training")
    cut = splits.cutoffs.get("test")
    if cut is not None and len(fit) and int(fit[TIME].max()) >= cut:
        problems.append("training holds interactions at or after the test cut-off")
    if cut is None and len(splits.test):
        last_fit = fit.groupby(USER)[TIME].max()
        first_test = splits.test.groupby(USER)[TIME].min()
        both = first_test.index.intersection(last_fit.index)
        later = (last_fit[both] > first_test[both]).sum()
        if later:
            problems.append(f"{int(later)} users have training interactions after their test ones")
    return problems
