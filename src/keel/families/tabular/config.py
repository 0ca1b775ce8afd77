"""The tabular family's keel.yaml rules, checked when keel.yaml is read.

``keel.config.ProjectConfig`` holds every key; this module says which of them the
family needs and how they must relate (a ``ValueError`` names the key and the fix).
"""

from __future__ import annotations

from typing import Any

from keel.config import CANDIDATES, RECOMMENDATION_KEYS, TUNABLE


def check_config(config: Any) -> None:
    """Raise a ValueError naming the key and the fix when keel.yaml breaks a rule."""
    misplaced = [key for key in RECOMMENDATION_KEYS if getattr(config, key) is not None]
    if config.split.strategy is not None:
        misplaced.append("split.strategy")
    if misplaced:
        raise ValueError(
            f"{', '.join(misplaced)} {'is' if len(misplaced) == 1 else 'are'} for"
            " task: recommendation; set task: recommendation or remove them"
        )
    if config.target is None:
        raise ValueError(
            "target is required: name the column to predict (or set task: recommendation"
            " with user_column, item_column and time_column)"
        )
    wrong = [c for c in config.candidates if c not in CANDIDATES]
    if wrong:
        raise ValueError(
            f"candidates {wrong} are recommenders; a {config.task or 'tabular'} model takes"
            f" {', '.join(CANDIDATES)}"
        )
    if "ensemble" in config.candidates and not set(config.candidates) & set(TUNABLE):
        raise ValueError(
            "candidates: ensemble combines tuned candidates; list at least one of"
            f" {', '.join(TUNABLE)} beside it"
        )
    if config.target in config.ignore_columns:
        raise ValueError(f"target {config.target!r} cannot also be in ignore_columns")
    if config.time_column and config.group_column:
        raise ValueError("time_column and group_column cannot both be set: choose how to split")
    if config.target in (config.time_column, config.group_column):
        raise ValueError(f"target {config.target!r} cannot be the time or group column")
    return
