"""The recommendation family's keel.yaml rules, checked when keel.yaml is read.

``keel.config.ProjectConfig`` holds every key; this module says which of them the
family needs and how they must relate (a ``ValueError`` names the key and the fix).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from keel.config import DEFAULT_RECOMMENDERS, RECOMMENDERS


class CapRule(BaseModel):
    """At most ``at_most`` items matching ``where`` in one list (``cap:`` entries)."""

    model_config = ConfigDict(extra="forbid")
    where: dict[str, Any] = Field(min_length=1)
    at_most: int = Field(ge=0, le=1000)


class RulesConfig(BaseModel):
    """Business rules that hold on every path: serving, batch files, evaluation.

    ``never``: item ids never recommended. ``never_where``: conditions on item attributes
    (``{available: false}``); matching items are never recommended. ``cap``: at most N
    items matching a condition per list (``[{where: {genre: Horror}, at_most: 2}]``).
    """

    model_config = ConfigDict(extra="forbid")
    never: list[str | int] = Field(default_factory=list, max_length=1_000_000)
    never_where: dict[str, Any] = Field(default_factory=dict)
    cap: list[CapRule] = Field(default_factory=list, max_length=50)

    @field_validator("never")
    @classmethod
    def _ids_as_text(cls, value: list[str | int]) -> list[str | int]:
        return [str(v) for v in value]


class ColdStartConfig(BaseModel):
    """A new user's list: the popularity of their segment (``user_attributes``).

    ``user_attributes``: columns of the ``users:`` table whose combination is a segment
    (e.g. ``[age_band]``); ``min_users``: a smaller segment gets the global list.
    """

    model_config = ConfigDict(extra="forbid")
    user_attributes: list[str] = Field(default_factory=list, max_length=5)
    min_users: int = Field(20, ge=1, le=1_000_000)


class AnnConfig(BaseModel):
    """An approximate index for large catalogues (``keel.families.recommendation.ann``).

    ``min_items``: a factor model over at least this many items is served from an HNSW
    index (default 100,000: where exact top-K stops fitting a 20 ms p95 at concurrency
    8); ``min_recall``: the index's recall@10 of the exact list it must reach on every
    build, or it is not used.
    """

    model_config = ConfigDict(extra="forbid")
    min_items: int = Field(100_000, ge=1)
    min_recall: float = Field(0.95, gt=0.0, le=1.0)


class RecommendSection(BaseModel):
    """keel.yaml ``recommend:``: the recommendation family's own settings."""

    model_config = ConfigDict(extra="forbid")
    rules: RulesConfig = Field(default_factory=RulesConfig)
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    ann: AnnConfig = Field(default_factory=AnnConfig)


def defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The default recommenders, and a split by time unless keel.yaml chooses another."""
    data.setdefault("candidates", list(DEFAULT_RECOMMENDERS))
    split = data.get("split")
    if split is None or isinstance(split, dict):
        data["split"] = {"strategy": "global_time", **(split or {})}
    return data


def check_config(config: Any) -> None:
    """Raise a ValueError naming the key and the fix when keel.yaml breaks a rule."""
    missing = [k for k in ("user_column", "item_column", "time_column") if not getattr(config, k)]
    if missing:
        raise ValueError(
            f"task: recommendation needs {', '.join(missing)}: name the interaction"
            " table's columns (user_column: user_id, item_column: item_id, time_column:"
            " timestamp)"
        )
    roles = [config.user_column, config.item_column, config.time_column, config.rating_column]
    named = [r for r in roles if r]
    if len(set(named)) < len(named):
        raise ValueError(f"user, item, time and rating columns must differ, got {named}")
    if config.target is not None:
        raise ValueError(
            "a recommendation model has no target: remove target (relevance comes from"
            " rating_column and relevant_from)"
        )
    if config.relevant_from is not None and config.rating_column is None:
        raise ValueError("relevant_from needs rating_column: the column it is compared to")
    if config.sensitive_features and config.users is None:
        raise ValueError(
            "sensitive_features of a recommender are user attributes: add users: FILE"
            " (one row per user with those columns)"
        )
    if config.item_attribute and config.items is None:
        raise ValueError("item_attribute needs items: FILE (one row per item)")
    wrong = [c for c in config.candidates if c not in RECOMMENDERS]
    if wrong:
        raise ValueError(
            f"candidates {wrong} are not recommenders; task: recommendation takes"
            f" {', '.join(RECOMMENDERS)}"
        )
    if config.group_column:
        raise ValueError("group_column does not apply to recommendation; remove it")
    section = config.section
    if section is not None and section.cold_start.user_attributes and config.users is None:
        raise ValueError(
            "recommend.cold_start.user_attributes are columns of the users table: add"
            " users: FILE (one row per user with those columns)"
        )
    rules = section.rules if section is not None else None
    if rules is not None and (rules.never_where or rules.cap) and config.items is None:
        raise ValueError(
            "recommend.rules.never_where and cap are conditions on item attributes: add"
            " items: FILE (one row per item with those columns)"
        )
