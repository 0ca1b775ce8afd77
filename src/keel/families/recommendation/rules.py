"""Which items a list may hold: a request's filters and keel.yaml's business rules.

Two sources, one mechanism, applied **before** the top-K cut, so a list holds K items
whenever K items qualify:

- **Business rules** (keel.yaml ``recommend.rules``) hold on every path — ``POST
  /recommend``, ``keel predict`` / batch files, and the evaluation the model is chosen
  and gated by: ``never`` (item ids never recommended), ``never_where`` (items whose
  attributes match) and ``cap`` (at most N items matching a condition in one list).
- **Filters** (a request's ``filters``) narrow one answer: ``include`` (an allow-list),
  ``exclude`` (a block-list) and ``where`` (conditions on item attributes).

Conditions name columns of the ``items:`` table, kept in the model package
(:class:`ItemAttributes`): ``{"genre": ["Comedy", "Drama"]}`` holds when the item has
any of those values (an attribute with several values, ``"Action|Comedy"``, matches on
any of them), ``{"available": true}`` when it equals the value, and
``{"year": {">=": 1990}}`` compares (``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``,
``in``, ``not_in``). Every condition of a ``where`` must hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.evaluation._ranking import top_k

MAX_LEVELS = 1000
"""A text column of the items table is kept for filters when it has at most this many
values (titles and descriptions are not filters); rules' columns are always kept."""
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in")
_COMPARE = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
}


class RuleError(ValueError):
    """A filter or rule that cannot be applied (names the attribute and the fix)."""


@dataclass
class ItemAttributes:
    """Attribute columns of the catalogue, aligned with the model's item columns.

    ``columns`` maps a name to one value per item (text, bool or number; text may hold
    several values joined by ``separator``). Missing values never match a condition.
    """

    columns: dict[str, np.ndarray] = field(default_factory=dict)
    separator: str = "|"
    _sets: dict[str, list[frozenset[str]]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame | None,
        item_ids: np.ndarray,
        separator: str = "|",
        keep: Sequence[str] = (),
    ) -> ItemAttributes:
        """The filterable columns of ``table`` (indexed by item id) for ``item_ids``.

        Bool and numeric columns are kept (text that is
        :data:`NUMERIC_SHARE` numbers is read as numbers),
        text columns with at most :data:`MAX_LEVELS` values, and every column in ``keep``
        (the ones business rules name).
        """
        if table is None:
            return cls({}, separator)
        aligned = table.reindex(pd.Index(np.asarray(item_ids).astype(str)))
        columns: dict[str, np.ndarray] = {}
        for name in aligned.columns:
            values = aligned[name]
            if pd.api.types.is_bool_dtype(values):
                columns[str(name)] = values.to_numpy(dtype=bool)
            elif pd.api.types.is_numeric_dtype(values) or _numeric_text(values):
                columns[str(name)] = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
            elif str(name) in keep or values.nunique() <= MAX_LEVELS:
                text = values.astype("string").fillna("").to_numpy(dtype=str)
                columns[str(name)] = _boolish(text)
        return cls(columns, separator)

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as plain arrays (what the package stores, no pickle)."""
        return {f"attribute.{name}": values for name, values in self.columns.items()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], separator: str) -> ItemAttributes:
        """The inverse of :meth:`arrays`."""
        prefix = "attribute."
        return cls(
            {k[len(prefix) :]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)},
            separator,
        )

    def names(self) -> list[str]:
        """The attributes conditions may name."""
        return sorted(self.columns)

    def matches(self, where: Mapping[str, Any], label: str = "where") -> np.ndarray:
        """One bool per item: every condition of ``where`` holds."""
        n = len(next(iter(self.columns.values()))) if self.columns else 0
        out: np.ndarray | None = None
        for name, condition in where.items():
            hit = self._condition(str(name), condition, label)
            out = hit if out is None else out & hit
        return np.ones(n, dtype=bool) if out is None else out

    def _condition(self, name: str, condition: Any, label: str) -> np.ndarray:
        if name not in self.columns:
            known = ", ".join(self.names()) or "none (keel.yaml has no items: table)"
            raise RuleError(
                f"{label}.{name}: not an item attribute of this model; attributes are {known}"
            )
        if isinstance(condition, Mapping):
            if len(condition) != 1 or next(iter(condition)) not in OPERATORS:
                raise RuleError(
                    f"{label}.{name}: a condition is one of {', '.join(OPERATORS)} with a"
                    f" value, e.g. {{{name!r}: {{'>=': 3}}}}; got {dict(condition)!r}"
                )
            op, value = next(iter(condition.items()))
        elif isinstance(condition, list | tuple):
            op, value = "in", list(condition)
        else:
            op, value = "==", condition
        values = self.columns[name]
        if op in ("in", "not_in"):
            if not isinstance(value, list | tuple) or not value:
                raise RuleError(f"{label}.{name}: {op} needs a non-empty list of values")
            hit = self._any_of(name, values, list(value), label)
            return hit if op == "in" else ~hit & self._present(values)
        if op in ("==", "!="):
            hit = self._any_of(name, values, [value], label)
            return hit if op == "==" else ~hit & self._present(values)
        if values.dtype.kind != "f" or isinstance(value, bool) or not _is_number(value):
            raise RuleError(
                f"{label}.{name}: {op} compares numbers; {name} is"
                f" {'numeric' if values.dtype.kind == 'f' else 'not numeric'} and the value"
                f" is {value!r}"
            )
        with np.errstate(invalid="ignore"):
            return _COMPARE[op](values, float(value)) & ~np.isnan(values)

    def _any_of(self, name: str, values: np.ndarray, wanted: list[Any], label: str):
        kind = values.dtype.kind
        if kind == "b":
            if not all(isinstance(w, bool) for w in wanted):
                raise RuleError(f"{label}.{name}: {name} is true/false; got {wanted!r}")
            return np.isin(values, wanted)
        if kind == "f":
            if not all(_is_number(w) and not isinstance(w, bool) for w in wanted):
                raise RuleError(f"{label}.{name}: {name} is a number; got {wanted!r}")
            return np.isin(values, np.asarray(wanted, dtype=np.float64))
        targets = {str(w) for w in wanted}
        sets = self._value_sets(name)
        return np.fromiter((not s.isdisjoint(targets) for s in sets), bool, len(sets))

    def _value_sets(self, name: str) -> list[frozenset[str]]:
        if name not in self._sets:
            sep = self.separator
            self._sets[name] = [
                frozenset(v for v in str(text).split(sep) if v) for text in self.columns[name]
            ]
        return self._sets[name]

    @staticmethod
    def _present(values: np.ndarray) -> np.ndarray:
        if values.dtype.kind == "f":
            return ~np.isnan(values)
        if values.dtype.kind == "b":
            return np.ones(len(values), dtype=bool)
        return values != ""


NUMERIC_SHARE = 0.95
"""Text of which this share parses as numbers ("1995") is read as numbers; the rest
("unknown") becomes missing, which no condition matches."""


def _numeric_text(values: pd.Series) -> bool:
    present = values.dropna()
    present = present[present.astype(str).str.strip() != ""]
    parsed = pd.to_numeric(present, errors="coerce").notna()
    return bool(len(present)) and float(parsed.mean()) >= NUMERIC_SHARE


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and np.isfinite(value)


def _boolish(text: np.ndarray) -> np.ndarray:
    """Text that only says true/false (CSV's "True"/"False") as bools."""
    lowered = np.char.lower(text.astype(str))
    if len(lowered) and np.isin(lowered, ["true", "false"]).all():
        return lowered == "true"
    return text


@dataclass(frozen=True)
class Cap:
    """At most ``at_most`` items matching ``where`` in one list."""

    where: dict[str, Any]
    at_most: int


@dataclass
class ItemRules:
    """keel.yaml's business rules, resolved against one catalogue.

    ``blocked`` is one bool per item (never recommended); ``caps`` pairs each cap's
    item mask with its limit.
    """

    blocked: np.ndarray
    caps: list[tuple[np.ndarray, int]] = field(default_factory=list)
    described: list[str] = field(default_factory=list)

    @classmethod
    def none(cls, n_items: int) -> ItemRules:
        """No rule: every item may be recommended, no cap."""
        return cls(np.zeros(n_items, dtype=bool))

    @classmethod
    def resolve(
        cls,
        spec: Mapping[str, Any] | None,
        item_ids: np.ndarray,
        attributes: ItemAttributes,
    ) -> ItemRules:
        """The rules of ``spec`` (keel.yaml ``recommend.rules`` as a dict) for a catalogue.

        Item ids in ``never`` that the catalogue does not hold are ignored (an item
        that cannot be recommended needs no rule); unknown attributes raise
        :class:`RuleError` naming ``recommend.rules...``.
        """
        n = len(item_ids)
        rules = cls.none(n)
        if not spec:
            return rules
        never = [str(i) for i in spec.get("never") or []]
        if never:
            rules.blocked |= pd.Index(np.asarray(item_ids).astype(str)).isin(never)
            rules.described.append(f"never: {len(never)} item ids")
        where = spec.get("never_where") or {}
        if where:
            rules.blocked |= attributes.matches(where, "recommend.rules.never_where")
            rules.described.append(f"never where {_describe(where)}")
        for i, cap in enumerate(spec.get("cap") or []):
            mask = attributes.matches(cap["where"], f"recommend.rules.cap[{i}].where")
            rules.caps.append((mask, int(cap["at_most"])))
            rules.described.append(f"at most {cap['at_most']} where {_describe(cap['where'])}")
        return rules

    @property
    def active(self) -> bool:
        """Whether any rule changes a list."""
        return bool(self.blocked.any() or self.caps)


def _describe(where: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v!r}" for k, v in where.items())


@dataclass(frozen=True)
class Filters:
    """A request's filters: an allow-list, a block-list, attribute conditions."""

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    where: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> Filters:
        """Filters from a request's or a command's ``filters`` object."""
        if not raw:
            return cls()
        include = raw.get("include")
        return cls(
            None if include is None else tuple(str(i) for i in include),
            tuple(str(i) for i in raw.get("exclude") or ()),
            dict(raw.get("where") or {}),
        )

    @property
    def empty(self) -> bool:
        """Whether these filters narrow nothing."""
        return self.include is None and not self.exclude and not self.where


def item_mask(
    filters: Filters, item_ids: pd.Index, attributes: ItemAttributes
) -> tuple[np.ndarray, list[str]]:
    """One bool per item (the filters allow it) and the filter's unknown item ids."""
    n = len(item_ids)
    allowed = np.ones(n, dtype=bool)
    unknown: list[str] = []
    if filters.include is not None:
        index = item_ids.get_indexer(pd.Index(filters.include))
        unknown += [i for i, j in zip(filters.include, index, strict=True) if j < 0]
        allowed[:] = False
        allowed[index[index >= 0]] = True
    if filters.exclude:
        index = item_ids.get_indexer(pd.Index(filters.exclude))
        unknown += [i for i, j in zip(filters.exclude, index, strict=True) if j < 0]
        allowed[index[index >= 0]] = False
    if filters.where:
        allowed &= attributes.matches(filters.where, "filters.where")
    return allowed, unknown


def capped_top_k(
    scores: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    caps: Sequence[tuple[np.ndarray, int]] = (),
) -> np.ndarray:
    """:func:`top_k` where at most ``limit`` items of each cap's mask enter one list.

    Items are taken best first (ties: the lower column), skipping an item whose cap is
    full, so a list is as long as the allowed items allow (``-1`` pads the rest).
    """
    if not caps:
        return top_k(scores, k, allowed)
    rows, columns = scores.shape
    k = min(k, columns)
    wide = top_k(scores, min(columns, 4 * k + sum(limit for _, limit in caps)), allowed)
    out = np.full((rows, k), -1, dtype=np.int64)
    for row in range(rows):
        picked = _greedy(wide[row], k, caps)
        if len(picked) < k and (wide[row] >= 0).all() and wide.shape[1] < columns:
            # the wide list ran out before k items passed the caps: rank the whole row
            mask = None if allowed is None else allowed[row : row + 1]
            full = top_k(scores[row : row + 1], columns, mask)
            picked = _greedy(full[0], k, caps)
        out[row, : len(picked)] = picked
    return out


def _greedy(order: np.ndarray, k: int, caps: Sequence[tuple[np.ndarray, int]]) -> list[int]:
    used = [0] * len(caps)
    picked: list[int] = []
    for column in order:
        if column < 0 or len(picked) == k:
            break
        hits = [i for i, (mask, _) in enumerate(caps) if mask[column]]
        if any(used[i] >= caps[i][1] for i in hits):
            continue
        for i in hits:
            used[i] += 1
        picked.append(int(column))
    return picked


@dataclass(frozen=True)
class Catalogue:
    """The items table, keel.yaml's rules and the users' segments: what every fit gets.

    ``table`` is indexed by item id (``None``: no items table); ``rules`` is keel.yaml's
    ``recommend.rules`` as a dict; ``users`` (by user id) and ``user_attributes`` make the
    cold-start segments (:mod:`~keel.families.recommendation.coldstart`).
    """

    table: pd.DataFrame | None = None
    separator: str = "|"
    rules: dict[str, Any] = field(default_factory=dict)
    users: pd.DataFrame | None = None  # the users table (by user id): cold-start segments
    user_attributes: tuple[str, ...] = ()
    min_users: int = 20
    # what attach made for the frame last seen (every trial of a run fits the same one)
    _made: list = field(default_factory=list, repr=False, compare=False)

    def attributes(self, item_ids: np.ndarray) -> ItemAttributes:
        """The catalogue's filterable attributes for ``item_ids``."""
        keep = [*self.rules.get("never_where", {})]
        keep += [name for cap in self.rules.get("cap", []) for name in cap["where"]]
        return ItemAttributes.from_table(self.table, item_ids, self.separator, keep)

    def attach(self, model: Any) -> Any:
        """``model`` (a RecommenderModel) with these attributes, rules and segments."""
        from keel.families.recommendation.coldstart import Segments

        if not (self._made and self._made[0] is model.history):
            self._made[:] = [
                model.history,
                Segments.fit(
                    model.history, model.user_ids, self.users, self.user_attributes, self.min_users
                ),
                self.attributes(model.item_ids),
            ]
        model.segments = self._made[1]
        return model.with_catalogue(self._made[2], self.rules)


def read_filters(text: str | None) -> Filters | None:
    """``--filters``: a JSON object, or ``@FILE`` holding one (``None``: no filters)."""
    import json
    from pathlib import Path

    from keel.errors import KeelInputError

    if text is None:
        return None
    label = "--filters"
    if text.startswith("@"):
        label = f"--filters {text}"
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeelInputError(f"{label}: cannot read it ({exc.strerror})") from None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise KeelInputError(f"{label}: not JSON ({exc}); e.g. '{FILTERS_EXAMPLE}'") from None
    if not isinstance(raw, dict) or set(raw) - {"include", "exclude", "where"}:
        raise KeelInputError(
            f"{label}: an object with include, exclude and/or where; e.g. '{FILTERS_EXAMPLE}'"
        )
    for key in ("include", "exclude"):
        if key in raw and not isinstance(raw[key], list):
            raise KeelInputError(f"{label}: {key} is a list of item ids")
    if "where" in raw and not isinstance(raw["where"], dict):
        raise KeelInputError(f"{label}: where is an object of conditions, e.g. {FILTERS_EXAMPLE}")
    return Filters.of(raw)


FILTERS_EXAMPLE = '{"where": {"genre": ["Comedy"], "available": true}, "exclude": ["42"]}'
