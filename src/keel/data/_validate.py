"""``keel validate``: check a data file against a schema (given or inferred) and profile it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.data._ingest import Dataset, ingest
from keel.data._profile import Profile
from keel.data._schema import (
    Schema,
    Violation,
    infer_schema,
    mixed_type_violations,
    read_schema,
    validate_frame,
)
from keel.errors import DataError, did_you_mean


@dataclass
class ValidationResult:
    """What validating one data file found."""

    dataset: Dataset = field(repr=False)
    schema: Schema
    schema_source: str
    violations: list[Violation]
    profile: Profile = field(repr=False)

    @property
    def valid(self) -> bool:
        """Whether no rule is broken."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the body of ``keel validate --json``)."""
        return {
            "data": self.dataset.source,
            "digest": self.dataset.digest,
            "rows": self.dataset.n_rows,
            "columns": len(self.dataset.columns),
            "schema": self.schema_source,
            "schema_digest": self.schema.digest,
            "valid": self.valid,
            "violations": [v.to_dict() for v in self.violations],
        }


def validate_file(
    path: str | Path,
    schema_path: str | Path | None = None,
    target: str | None = None,
) -> ValidationResult:
    """Read ``path``, check it against the schema file (or an inferred schema), profile it.

    Without ``schema_path`` the schema is inferred from the data itself, so only rules
    that can fail on their own data (unique ids) can report violations; write the
    inferred schema, edit it, and validate new data against it.
    """
    dataset = ingest(path)
    if schema_path is not None:
        schema = read_schema(schema_path)
        source = str(Path(schema_path).resolve())
    else:
        if target is not None and target not in dataset.columns:
            raise DataError(
                f"{dataset.source}: --target {target!r} is not a column"
                f"{did_you_mean(target, dataset.columns)}"
            )
        schema = infer_schema(dataset.frame, target)
        source = "inferred"
    violations = validate_frame(dataset.frame, schema)
    if schema_path is None:  # a given schema's type checks already catch these
        violations = mixed_type_violations(dataset.frame) + violations
    unexpected = [c for c in dataset.columns if c not in schema]
    for name in unexpected:
        violations.append(
            Violation(
                name, "not in the schema" + did_you_mean(name, schema.names), dataset.n_rows, ()
            )
        )
    present = Schema(
        columns=tuple(c for c in schema.columns if c.name in dataset.frame.columns),
        target=schema.target if schema.target in dataset.frame.columns else None,
    )
    profile = Profile.from_frame(dataset.frame, present)
    return ValidationResult(dataset, schema, source, violations, profile)
