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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
import yaml
from pandera.errors import SchemaErrors

from keel.errors import DataError, did_you_mean

Kind = Literal["integer", "float", "boolean", "string", "datetime"]
Role = Literal["feature", "target", "id", "ignored"]
KINDS: tuple[str, ...] = ("integer", "float", "boolean", "string", "datetime")
ROLES: tuple[str, ...] = ("feature", "target", "id", "ignored")

SCHEMA_VERSION = 1
MAX_CATEGORIES = 50
MAX_STRING_LENGTH = 1_000
DEFAULT_TOLERANCE = 0.25
# Formats recognised in string columns when every value matches (checked in this order).
PATTERNS: dict[str, str] = {
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "iso date": r"^\d{4}-\d{2}-\d{2}$",
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "digits": r"^\d+$",
}
MIN_ROWS_FOR_PATTERN = 20
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
    pattern: str | None = None
    tolerance: float = DEFAULT_TOLERANCE
    note: str = ""

    def allowed_range(self) -> tuple[float, float] | None:
        """The accepted numeric range: the observed one widened by ``tolerance``.

        The range is widened on each side by ``tolerance`` times its width; a column
        that was never negative stays non-negative.
        """
        if self.minimum is None or self.maximum is None:
            return None
        slack = self.tolerance * (self.maximum - self.minimum)
        low = self.minimum - slack
        if self.minimum >= 0:
            low = max(low, 0.0)
        return low, self.maximum + slack


@dataclass(frozen=True)
class Schema:
    """The columns of a dataset, which one is the target, and which ones are features."""

    columns: tuple[ColumnSchema, ...]
    target: str | None
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
            if column.kind not in ("integer", "float"):
                item.pop("tolerance")
            if not item["unique"]:
                item.pop("unique")
            columns.append({k: v for k, v in item.items() if v not in (None, "")})
        return {"version": self.version, "target": self.target, "columns": columns}

    @classmethod
    def from_dict(cls, data: Any, origin: str = "schema") -> Schema:
        """Read (and check) the form written by :meth:`to_dict`, e.g. a hand-edited file.

        Raises
        ------
        DataError
            Naming the column and key that is wrong, and what is allowed.
        """
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
            raise DataError(f"{origin}: must be a mapping with 'target' and a list of 'columns'")
        allowed = [f for f in ColumnSchema.__dataclass_fields__]
        columns = []
        for i, item in enumerate(data["columns"]):
            where = f"{origin}: columns[{i}]"
            if not isinstance(item, dict) or "name" not in item:
                raise DataError(f"{where}: each column needs at least 'name' and 'kind'")
            where = f"{origin}: column {item['name']!r}"
            for key in item:
                if key not in allowed:
                    raise DataError(
                        f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)};"
                        f" allowed: {', '.join(allowed)}"
                    )
            for key, choices in (("kind", KINDS), ("role", ROLES)):
                if key in item and item[key] not in choices:
                    raise DataError(
                        f"{where}: {key} must be one of {', '.join(choices)}, got {item[key]!r}"
                        f"{did_you_mean(str(item[key]), choices)}"
                    )
            if "kind" not in item:
                raise DataError(f"{where}: missing 'kind' (one of {', '.join(KINDS)})")
            for key in ("minimum", "maximum", "tolerance"):
                value = item.get(key)
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    raise DataError(f"{where}: {key} must be a number, got {value!r}")
            if item.get("pattern") is not None:
                try:
                    re.compile(item["pattern"])
                except re.error as exc:
                    raise DataError(f"{where}: pattern is not a valid regex ({exc})") from exc
            categories = item.get("categories")
            if categories is not None and not isinstance(categories, list):
                raise DataError(f"{where}: categories must be a list of values")
            columns.append(
                ColumnSchema(
                    **{
                        **item,
                        "name": str(item["name"]),
                        "nullable": bool(item.get("nullable", True)),
                        "categories": tuple(str(c) for c in categories) if categories else None,
                    }
                )
            )
        names = [c.name for c in columns]
        target = data.get("target")
        if target is not None and target not in names:
            raise DataError(
                f"{origin}: target {target!r} is not one of its columns"
                f"{did_you_mean(str(target), names)}"
            )
        if len(set(names)) != len(names):
            raise DataError(f"{origin}: a column is listed twice")
        return cls(columns=tuple(columns), target=target, version=int(data.get("version", 1)))

    @property
    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the canonical JSON form."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the human-editable file ----------------------------------------------------------

SCHEMA_HEADER = """\
# Keel schema: what each column may hold. Edit freely, then use it with
#   keel validate DATA --schema THIS_FILE      or      schema: THIS_FILE   in keel.yaml
# kind: integer | float | boolean | string | datetime
# role: feature | target | id | ignored (ignored and id columns are not model inputs)
# minimum/maximum: the observed range; values are accepted within it widened on each
#   side by tolerance x (maximum - minimum), never below 0 for a column never negative
# categories: the allowed values (delete the list to accept any string)
# pattern: a regular expression every value must match in full
"""


def write_schema(schema: Schema, path: str | Path) -> Path:
    """Write ``schema`` as commented YAML (atomically) and return the path."""
    path = Path(path)
    text = SCHEMA_HEADER + yaml.safe_dump(schema.to_dict(), sort_keys=False, allow_unicode=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def read_schema(path: str | Path) -> Schema:
    """Read a schema file (YAML or JSON) written by :func:`write_schema` or by hand."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such schema file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: not a readable YAML/JSON schema ({str(exc).splitlines()[0]})"
        ) from exc
    return Schema.from_dict(data, origin=str(path))


# -- inference ----------------------------------------------------------------------------


def infer_schema(
    frame: pd.DataFrame, target: str | None, ignore_columns: list[str] | tuple[str, ...] = ()
) -> Schema:
    """Infer a schema from ``frame``; ``target`` and ``ignore_columns`` get their roles.

    ``target`` may be ``None`` for data without labels (``keel validate``).
    """
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
        elif unique and len(series) >= 20 and kind == "integer" and _is_row_number(non_null):
            role, note = "id", "consecutive integers: a row number, not a feature"
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
        pattern = None
        if kind == "string" and len(non_null) >= MIN_ROWS_FOR_PATTERN and categories is None:
            pattern = _infer_pattern(non_null.astype(str))
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
                pattern=pattern,
                note=note,
            )
        )
    return Schema(columns=tuple(columns), target=target)


def _is_row_number(values: pd.Series) -> bool:
    """Whether the values are exactly consecutive integers (1..n, 0..n-1, k..k+n-1)."""
    low, high = int(values.min()), int(values.max())
    return high - low + 1 == len(values)


def _infer_pattern(values: pd.Series) -> str | None:
    sample = values.head(10_000)
    for regex in PATTERNS.values():
        if sample.str.fullmatch(regex).all():
            return regex
    return None


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
    rows: tuple[int, ...] = ()

    def describe(self) -> str:
        """One line: column, rule, how many rows, a few example values and their rows."""
        if self.rows:
            shown = ", ".join(
                f"row {r + 1}: {e!r}" for r, e in zip(self.rows, self.examples, strict=False)
            )
        else:
            shown = ", ".join(repr(e) for e in self.examples)
        return f"column {self.column!r}: {self.check} fails on {self.failing_rows} row(s)" + (
            f" (e.g. {shown})" if shown else ""
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``rows`` are 1-based data rows (the header is not counted)."""
        return {
            "column": self.column,
            "check": self.check,
            "failing_rows": self.failing_rows,
            "examples": [
                {"row": r + 1, "value": e} for r, e in zip(self.rows, self.examples, strict=False)
            ]
            or [{"value": e} for e in self.examples],
        }


def _pandera_schema(schema: Schema, columns: list[str]) -> pa.DataFrameSchema:
    checks: dict[str, pa.Column] = {}
    for column in schema.columns:
        if column.name not in columns:
            continue
        column_checks = [_type_check(column.kind)]
        if column.categories is not None and column.kind == "string":
            column_checks.append(pa.Check.isin(list(column.categories)))
        allowed = column.allowed_range() if column.kind in ("integer", "float") else None
        if allowed is not None:
            column_checks.append(_range_check(*allowed))
        if column.pattern and column.kind == "string":
            column_checks.append(_pattern_check(column.pattern))
        checks[column.name] = pa.Column(
            None,
            checks=column_checks,
            nullable=column.nullable,
            unique=column.unique and column.role == "id",
            required=True,
        )
    return pa.DataFrameSchema(checks, strict=False)


def _type_check(kind: Kind) -> pa.Check:
    def is_kind(series: pd.Series) -> pd.Series:
        # Fast paths first: a column whose dtype already says it all needs no
        # element-by-element look (1M rows in milliseconds instead of seconds).
        dtype = series.dtype
        if kind == "string":
            if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
                return pd.Series(True, index=series.index)
            if pd.api.types.infer_dtype(series, skipna=True) == "string":
                return pd.Series(True, index=series.index)
            return series.map(lambda v: isinstance(v, str))
        if kind == "boolean":
            if pd.api.types.is_bool_dtype(dtype):
                return pd.Series(True, index=series.index)
            return series.map(lambda v: isinstance(v, bool | np.bool_))
        if kind == "datetime":
            if pd.api.types.is_datetime64_any_dtype(dtype):
                return pd.Series(True, index=series.index)
            return pd.to_datetime(series, errors="coerce").notna()
        if pd.api.types.is_integer_dtype(dtype):
            return pd.Series(True, index=series.index)
        if pd.api.types.is_float_dtype(dtype):
            if kind == "float":
                return pd.Series(True, index=series.index)
            return series.isna() | series.mod(1).eq(0)
        numbers = pd.to_numeric(series, errors="coerce")
        ok = numbers.notna() & ~series.map(lambda v: isinstance(v, bool | np.bool_))
        if kind == "integer":
            ok &= numbers.where(ok, 0).mod(1).eq(0)
        return ok

    return pa.Check(is_kind, name=f"type {kind}", ignore_na=True)


def _range_check(low: float, high: float) -> pa.Check:
    def within_allowed_range(series: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype
        ):
            return series.isna() | series.between(low, high)
        numbers = pd.to_numeric(series, errors="coerce")
        return numbers.isna() | numbers.between(low, high)

    return pa.Check(within_allowed_range, name=f"in range [{low:g}, {high:g}]", ignore_na=True)


def _pattern_check(pattern: str) -> pa.Check:
    def matches_format(series: pd.Series) -> pd.Series:
        return series.map(lambda v: not isinstance(v, str) or re.fullmatch(pattern, v) is not None)

    return pa.Check(matches_format, name=f"matches {pattern}", ignore_na=True)


def mixed_type_violations(frame: pd.DataFrame, share: float = 0.95) -> list[Violation]:
    """Text columns that are numbers in almost every row: the other rows are typos.

    A column read as text because a few cells are not numbers (``"abc"`` among ages)
    would silently become a category; each such column is a violation naming those
    rows.
    """
    found = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        values = series.dropna()
        if len(values) < 10:
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        ok = numbers.notna()
        if ok.mean() >= share and not ok.all():
            bad = values[~ok]
            rows = tuple(int(i) for i in bad.index[:5])
            found.append(
                Violation(
                    str(name),
                    f"numbers in {int(ok.sum())} rows; non-numbers",
                    len(bad),
                    tuple(_plain(v) for v in bad.head(5)),
                    rows,
                )
            )
    return found


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
            head = group.head(max_examples)
            examples = tuple(_plain(v) for v in head["failure_case"])
            rows = tuple(int(i) for i in head["index"] if pd.notna(i))
            violations.append(
                Violation(
                    str(column),
                    str(check),
                    len(group),
                    examples,
                    rows if len(rows) == len(examples) else (),
                )
            )
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
    records: list[dict[str, Any]],
    schema: Schema,
    max_errors: int = 20,
    required: Sequence[str] = (),
    extra: str = "reject",
    as_columns: bool = False,
    unseen: str = "reject",
) -> tuple[pd.DataFrame | None, list[FieldError]]:
    """Check JSON rows against the schema and build the model's input frame.

    Returns ``(frame, [])`` when every row is valid, else ``(None, errors)`` with at
    most ``max_errors`` errors, each naming the row and field. Fields for the target,
    id and ignored columns are accepted and dropped; unknown fields are errors, or
    dropped too when ``extra="ignore"``. ``as_columns`` returns the checked values as
    ``{feature: [value per row]}`` instead of a frame (serving's fast path).
    ``unseen="accept"`` lets a string outside the schema's categories through (the
    model's encoder maps it to its "infrequent" bucket, as in training).
    Fields in ``required`` must be given and not null, whatever the schema allows
    (a model that decides per sensitive group needs the group).
    """
    needed = set(required)
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
        for key in record if extra == "reject" else ():
            if key not in known:
                hint = did_you_mean(str(key), schema.feature_names)
                errors.append(FieldError(i, str(key)[:100], f"unknown field{hint}"))
        for column in features:
            raw = record.get(column.name)
            if raw is None and column.name in needed:
                errors.append(
                    FieldError(
                        i,
                        column.name,
                        "required: the model decides per group of this sensitive feature"
                        " (fairness mitigation), so every row must give it",
                    )
                )
                continue
            ok, value, problem = _coerce(raw, column, unseen == "accept")
            if ok:
                values[column.name][i] = value
            else:
                errors.append(FieldError(i, column.name, problem))
        if len(errors) >= max_errors:
            break
    if errors:
        return None, errors[:max_errors]
    if as_columns:
        return values, []  # type: ignore[return-value]
    frame = pd.DataFrame({c.name: _column_array(values[c.name], c) for c in features}, copy=False)
    return frame, []


# -- column-wise validation (batch inference) ---------------------------------------------


def check_frame(
    frame: pd.DataFrame,
    schema: Schema,
    required: Sequence[str] = (),
    unseen: str = "accept",
    origin: str = "input",
) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """The rules of :func:`records_to_frame`, a column at a time, for a chunk of a file.

    Returns ``(model_frame, problems)``: the valid rows as the model's input (the dtypes
    serving builds) and, per position of a failing row, its problems ("age: expected a
    number (integer), got a string"). A feature column missing from ``frame`` is a
    DataError naming it (every row would fail). Text that parses as a number is a
    number here (a CSV holds only text).
    """
    n = len(frame)
    bad = np.zeros(n, dtype=bool)
    problems: dict[int, list[str]] = {}
    needed = set(required)

    def flag(mask: np.ndarray, name: str, message: Any) -> None:
        for i in np.flatnonzero(mask):
            bad[i] = True
            text = message(int(i)) if callable(message) else message
            problems.setdefault(int(i), []).append(f"{name}: {text}")

    missing = [c.name for c in schema.features if c.name not in frame.columns]
    if missing:
        hint = did_you_mean(missing[0], [str(c) for c in frame.columns])
        raise DataError(
            f"{origin}: no column {missing[0]!r}{hint} ({len(missing)} feature(s) of the"
            f" model missing: {', '.join(missing[:8])}); every row needs the model's features"
        )
    built: dict[str, Any] = {}
    for column in schema.features:
        series = frame[column.name]
        nulls = series.isna().to_numpy()
        if nulls.any() and (not column.nullable or column.name in needed):
            message = (
                "required: the model decides per group of this sensitive feature"
                " (fairness mitigation), so every row must give it"
                if column.name in needed
                else f"is required ({column.kind}, not nullable)"
            )
            flag(nulls, column.name, message)
        if column.kind in ("integer", "float"):
            built[column.name] = _numeric_column(series, nulls, column, flag)
        elif column.kind == "boolean":
            built[column.name] = _boolean_column(series, nulls, column, flag)
        else:
            built[column.name] = _string_column(series, nulls, column, unseen, flag)
    good = ~bad
    model_frame = pd.DataFrame({name: values[good] for name, values in built.items()}, copy=False)
    return model_frame, problems


def _numeric_column(series: pd.Series, nulls: np.ndarray, column: ColumnSchema, flag: Any) -> Any:
    name = column.name
    if pd.api.types.is_bool_dtype(series):
        flag(~nulls, name, f"expected a number ({column.kind}), got a boolean")
        values = np.zeros(len(series))
    elif pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        text = np.isnan(values) & ~nulls
        flag(
            text,
            name,
            lambda i: f"expected a number ({column.kind}), got {_json_type(series.iloc[i])}",
        )
    infinite = np.isinf(values)
    flag(infinite, name, "expected a finite number")
    finite = np.isfinite(values)
    if column.kind == "integer":
        fraction = finite & (values != np.floor(np.where(finite, values, 0.0)))
        flag(fraction, name, lambda i: f"expected a whole number, got {values[i]}")
        huge = finite & (np.abs(values) > 2**63 - 1)
        flag(huge, name, "number out of range")
    allowed = column.allowed_range()
    if allowed is not None:
        outside = finite & ((values < allowed[0]) | (values > allowed[1]))
        shown = (lambda v: int(v)) if column.kind == "integer" else (lambda v: v)
        flag(
            outside,
            name,
            lambda i: (
                f"{shown(values[i])} is outside the allowed range [{allowed[0]:g}, {allowed[1]:g}]"
            ),
        )
    if column.kind == "float":
        return values
    whole = np.where(finite & (np.abs(values) <= 2**63 - 1), values, 0.0).astype(np.int64)
    if column.nullable:
        array = pd.array(whole, dtype="Int64")
        array[nulls] = pd.NA
        return array
    return whole


def _boolean_column(series: pd.Series, nulls: np.ndarray, column: ColumnSchema, flag: Any) -> Any:
    if pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=bool, na_value=False)
    else:
        words = series.map(lambda v: v if isinstance(v, bool) else str(v).strip().lower())
        known = words.isin([True, False, "true", "false"]).to_numpy()
        flag(
            ~known & ~nulls,
            column.name,
            lambda i: f"expected true or false, got {_json_type(series.iloc[i])}",
        )
        values = words.isin([True, "true"]).to_numpy()
    if column.nullable:
        return np.array(
            [None if n else bool(v) for v, n in zip(values, nulls, strict=True)], dtype=object
        )
    return values


def _string_column(
    series: pd.Series, nulls: np.ndarray, column: ColumnSchema, unseen: str, flag: Any
) -> Any:
    name = column.name
    values = series.to_numpy(dtype=object)
    strings = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
    flag(~strings & ~nulls, name, lambda i: f"expected a string, got {_json_type(values[i])}")
    text = pd.Series(np.where(strings, values, ""), dtype=object)
    lengths = text.str.len().to_numpy(dtype=float, na_value=0)
    flag(lengths > MAX_STRING_LENGTH, name, f"string longer than {MAX_STRING_LENGTH} characters")
    if column.categories is not None and unseen != "accept":
        unknown = strings & ~text.isin(column.categories).to_numpy()
        shown = ", ".join(column.categories[:8]) + (", ..." if len(column.categories) > 8 else "")
        flag(
            unknown,
            name,
            lambda i: (
                f"{values[i][:50]!r} is not a known category"
                f"{did_you_mean(values[i], column.categories)}; allowed: {shown}"
            ),
        )
    if column.pattern:
        matches = text.str.fullmatch(column.pattern).to_numpy(dtype=bool, na_value=False)
        flag(strings & ~matches, name, f"does not match the expected format {column.pattern}")
    out = values.copy()
    out[nulls] = np.nan
    return out


def _column_array(values: list[Any], column: ColumnSchema) -> Any:
    """Build one column of the model's input with the dtype training saw (fast path)."""
    if column.kind == "integer":
        return pd.array(values, dtype="Int64") if column.nullable else np.array(values, np.int64)
    if column.kind == "float":
        return np.array(values, dtype=np.float64)
    if column.kind == "boolean" and not column.nullable:
        return np.array(values, dtype=bool)
    return np.array(values, dtype=object)


def _coerce(raw: Any, column: ColumnSchema, accept_unseen: bool = False) -> tuple[bool, Any, str]:
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
            raw = int(raw)
        allowed = column.allowed_range()
        if allowed is not None and not allowed[0] <= raw <= allowed[1]:
            return (
                False,
                None,
                f"{raw} is outside the allowed range [{allowed[0]:g}, {allowed[1]:g}]",
            )
        return True, (raw if column.kind == "integer" else float(raw)), ""
    if column.kind == "boolean":
        if not isinstance(raw, bool):
            return False, None, f"expected true or false, got {_json_type(raw)}"
        return True, raw, ""
    if not isinstance(raw, str):
        return False, None, f"expected a string, got {_json_type(raw)}"
    if len(raw) > MAX_STRING_LENGTH:
        return False, None, f"string longer than {MAX_STRING_LENGTH} characters"
    if column.categories is not None and not accept_unseen and raw not in column.categories:
        shown = ", ".join(column.categories[:8]) + (", ..." if len(column.categories) > 8 else "")
        hint = did_you_mean(raw, column.categories)
        return False, None, f"{raw[:50]!r} is not a known category{hint}; allowed: {shown}"
    if column.pattern and re.fullmatch(column.pattern, raw) is None:
        return False, None, f"does not match the expected format {column.pattern}"
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
