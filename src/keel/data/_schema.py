"""Schema: inferred from data, stored as JSON in the model package, enforced at boundaries.

One schema serves every boundary: :func:`validate_frame` checks a whole table with
pandera (ingest, training, monitoring batches) and :func:`records_to_frame` checks
JSON rows one by one (serving), both from the same :class:`Schema`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from keel.errors import DataError, did_you_mean

Kind = Literal["integer", "float", "boolean", "string", "datetime"]
Role = Literal["feature", "target", "id", "ignored"]

SCHEMA_VERSION = 1
MAX_CATEGORIES = 50
MAX_STRING_LENGTH = 1_000
_ID_NAME = re.compile(r"(^|_)(id|uuid|key)$|Id$|ID$", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnSchema:
    """What one column holds, as inferred from data (and editable by hand)."""

    name: str
    kind: Kind
    nullable: bool
    role: Role = "feature"
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None
    unique: bool = False
    note: str = ""


@dataclass(frozen=True)
class Schema:
    """The columns of a dataset, which one is the target, and which ones are features."""

    columns: tuple[ColumnSchema, ...]
    target: str
    version: int = SCHEMA_VERSION
    _by_name: dict[str, ColumnSchema] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    def __getitem__(self, name: str) -> ColumnSchema:
        try:
            return self._by_name[name]
        except KeyError:
            raise DataError(
                f"no column {name!r} in the schema{did_you_mean(name, self._by_name)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        """All column names, in order."""
        return [c.name for c in self.columns]

    @property
    def features(self) -> list[ColumnSchema]:
        """Columns the model reads, in order."""
        return [c for c in self.columns if c.role == "feature"]

    @property
    def feature_names(self) -> list[str]:
        """Names of the columns the model reads, in order."""
        return [c.name for c in self.features]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the format of ``schema.json``)."""
        columns = []
        for column in self.columns:
            item = asdict(column)
            if item["categories"] is not None:
                item["categories"] = list(item["categories"])
            columns.append({k: v for k, v in item.items() if v not in (None, "")})
        return {"version": self.version, "target": self.target, "columns": columns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        """Read the form written by :meth:`to_dict`."""
        try:
            columns = tuple(
                ColumnSchema(
                    **{
                        **c,
                        "categories": tuple(c["categories"]) if c.get("categories") else None,
                    }
                )
                for c in data["columns"]
            )
            return cls(columns=columns, target=data["target"], version=data.get("version", 1))
        except (KeyError, TypeError) as exc:
            raise DataError(f"schema is malformed: {exc}") from exc

    @property
    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the canonical JSON form."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- inference ----------------------------------------------------------------------------


def infer_schema(
    frame: pd.DataFrame, target: str, ignore_columns: list[str] | tuple[str, ...] = ()
) -> Schema:
    """Infer a schema from ``frame``; ``target`` and ``ignore_columns`` get their roles."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        kind = _kind_of(series)
        non_null = series.dropna()
        unique = bool(non_null.is_unique) and len(non_null) == len(series)
        role: Role = "feature"
        note = ""
        if name == target:
            role = "target"
        elif name in ignore_columns:
            role, note = "ignored", "listed in ignore_columns"
        elif kind == "datetime":
            role, note = "ignored", "timestamps are not used as features yet"
        elif (
            unique
            and len(series) >= 20
            and (kind == "string" or (kind == "integer" and _ID_NAME.search(str(name))))
        ):
            role, note = "id", "every value is distinct: an identifier, not a feature"
        elif non_null.empty:
            role, note = "ignored", "the column has no values"
        minimum = maximum = None
        categories = None
        if kind in ("integer", "float") and not non_null.empty:
            minimum, maximum = float(non_null.min()), float(non_null.max())
        if kind == "string" and role in ("feature", "target"):
            values = non_null.astype(str).unique()
            if len(values) <= MAX_CATEGORIES:
                categories = tuple(sorted(values))
        if kind == "boolean" and role == "target":
            categories = ("False", "True")
        columns.append(
            ColumnSchema(
                name=str(name),
                kind=kind,
                nullable=bool(series.isna().any()),
                role=role,
                minimum=minimum,
                maximum=maximum,
                categories=categories,
                unique=unique,
                note=note,
            )
        )
    return Schema(columns=tuple(columns), target=target)


def _kind_of(series: pd.Series) -> Kind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    non_null = series.dropna()
    if len(non_null) and non_null.map(type).isin([bool, np.bool_]).all():
        return "boolean"
    return "string"


# -- whole-table validation (pandera) -----------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One rule broken by some rows of a table."""

    column: str
    check: str
    failing_rows: int
    examples: tuple[Any, ...]

    def describe(self) -> str:
        """One line: column, rule, how many rows, a few example values."""
        shown = ", ".join(repr(e) for e in self.examples)
        return (
            f"column {self.column!r}: {self.check} fails on {self.failing_rows} row(s)"
            f" (e.g. {shown})"
        )


def _pandera_schema(schema: Schema, columns: list[str]) -> pa.DataFrameSchema:
    checks: dict[str, pa.Column] = {}
    for column in schema.columns:
        if column.name not in columns:
            continue
        column_checks = [_type_check(column.kind)]
        if column.categories is not None and column.kind == "string":
            column_checks.append(pa.Check.isin(list(column.categories)))
        checks[column.name] = pa.Column(
            None, checks=column_checks, nullable=column.nullable, required=True
        )
    return pa.DataFrameSchema(checks, strict=False)


def _type_check(kind: Kind) -> pa.Check:
    def is_kind(series: pd.Series) -> pd.Series:
        if kind == "string":
            return series.map(lambda v: isinstance(v, str))
        if kind == "boolean":
            return series.map(lambda v: isinstance(v, bool | np.bool_))
        if kind == "datetime":
            return pd.to_datetime(series, errors="coerce").notna()
        numbers = pd.to_numeric(series, errors="coerce")
        ok = numbers.notna() & ~series.map(lambda v: isinstance(v, bool | np.bool_))
        if kind == "integer":
            ok &= numbers.where(ok, 0).mod(1).eq(0)
        return ok

    return pa.Check(is_kind, name=f"type {kind}", ignore_na=True)


def validate_frame(frame: pd.DataFrame, schema: Schema, max_examples: int = 5) -> list[Violation]:
    """Check ``frame`` against ``schema`` with pandera; return every violation found.

    Columns of the schema that are missing from ``frame`` are violations too. The
    target may be absent (scoring data has no labels).
    """
    violations: list[Violation] = []
    for column in schema.columns:
        if column.name not in frame.columns and column.role != "target":
            violations.append(Violation(column.name, "column present", len(frame), ()))
    present = [c for c in schema.names if c in frame.columns]
    try:
        _pandera_schema(schema, present).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
            examples = tuple(_plain(v) for v in group["failure_case"].head(max_examples))
            violations.append(Violation(str(column), str(check), len(group), examples))
    return violations


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- row-by-row validation (serving) ------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """A problem with one field of one row of a request."""

    row: int
    field: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in HTTP 422 answers."""
        return {"loc": ["instances", self.row, self.field], "msg": self.message}


def records_to_frame(
    records: list[dict[str, Any]], schema: Schema, max_errors: int = 20
) -> tuple[pd.DataFrame | None, list[FieldError]]:
    """Check JSON rows against the schema and build the model's input frame.

    Returns ``(frame, [])`` when every row is valid, else ``(None, errors)`` with at
    most ``max_errors`` errors, each naming the row and field. Fields for the target,
    id and ignored columns are accepted and dropped; unknown fields are errors.
    """
    features = schema.features
    known = set(schema.names)
    errors: list[FieldError] = []
    values: dict[str, list[Any]] = {c.name: [None] * len(records) for c in features}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            errors.append(
                FieldError(i, "", f"each instance must be an object, got {_json_type(record)}")
            )
            continue
        for key in record:
            if key not in known:
                hint = did_you_mean(str(key), schema.feature_names)
                errors.append(FieldError(i, str(key)[:100], f"unknown field{hint}"))
        for column in features:
            raw = record.get(column.name)
            ok, value, problem = _coerce(raw, column)
            if ok:
                values[column.name][i] = value
            else:
                errors.append(FieldError(i, column.name, problem))
        if len(errors) >= max_errors:
            break
    if errors:
        return None, errors[:max_errors]
    frame = pd.DataFrame({c.name: _column_array(values[c.name], c) for c in features}, copy=False)
    return frame, []


def _column_array(values: list[Any], column: ColumnSchema) -> Any:
    """Build one column of the model's input with the dtype training saw (fast path)."""
    if column.kind == "integer":
        return pd.array(values, dtype="Int64") if column.nullable else np.array(values, np.int64)
    if column.kind == "float":
        return np.array(values, dtype=np.float64)
    if column.kind == "boolean" and not column.nullable:
        return np.array(values, dtype=bool)
    return np.array(values, dtype=object)


def _coerce(raw: Any, column: ColumnSchema) -> tuple[bool, Any, str]:
    if raw is None:
        if column.nullable:
            return True, (np.nan if column.kind in ("float", "string") else None), ""
        return False, None, f"is required ({column.kind}, not nullable)"
    if column.kind in ("integer", "float"):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return False, None, f"expected a number ({column.kind}), got {_json_type(raw)}"
        if isinstance(raw, float) and not math.isfinite(raw):
            return False, None, "expected a finite number"
        if column.kind == "integer":
            if isinstance(raw, float) and not raw.is_integer():
                return False, None, f"expected a whole number, got {raw}"
            if abs(raw) > 2**63 - 1:
                return False, None, "number out of range"
            return True, int(raw), ""
        return True, float(raw), ""
    if column.kind == "boolean":
        if not isinstance(raw, bool):
            return False, None, f"expected true or false, got {_json_type(raw)}"
        return True, raw, ""
    if not isinstance(raw, str):
        return False, None, f"expected a string, got {_json_type(raw)}"
    if len(raw) > MAX_STRING_LENGTH:
        return False, None, f"string longer than {MAX_STRING_LENGTH} characters"
    return True, raw, ""


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__
