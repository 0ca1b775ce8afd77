"""Data: ingest, content-addressed snapshots, schema inference and validation, splits."""

from keel.data._ingest import (
    SUPPORTED_SUFFIXES,
    Dataset,
    content_digest,
    ingest,
    read_columns,
    read_table,
    snapshot,
)
from keel.data._prepare import (
    LabelInfo,
    Splits,
    check_columns,
    infer_task,
    prepare_labels,
    split_frame,
)
from keel.data._profile import CategoricalStats, NumericStats, Profile, bin_edges
from keel.data._schema import (
    ColumnSchema,
    FieldError,
    Schema,
    Violation,
    infer_schema,
    read_schema,
    records_to_frame,
    validate_frame,
    write_schema,
)
from keel.data._validate import ValidationResult, validate_file

__all__ = [
    "SUPPORTED_SUFFIXES",
    "CategoricalStats",
    "ColumnSchema",
    "Dataset",
    "FieldError",
    "LabelInfo",
    "NumericStats",
    "Profile",
    "Schema",
    "Splits",
    "ValidationResult",
    "Violation",
    "bin_edges",
    "check_columns",
    "content_digest",
    "infer_schema",
    "infer_task",
    "ingest",
    "prepare_labels",
    "read_columns",
    "read_schema",
    "read_table",
    "records_to_frame",
    "snapshot",
    "split_frame",
    "validate_file",
    "validate_frame",
    "write_schema",
]
