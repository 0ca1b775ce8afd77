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
from keel.data._leakage import (
    FeatureScore,
    check_duplicates,
    check_single_feature_leakage,
    class_balance,
    duplicates_across,
    single_feature_scores,
)
from keel.data._pii import ACTIONS as PII_ACTIONS
from keel.data._pii import PiiReport, PiiScanner, protect, text_columns
from keel.data._prepare import LabelInfo, check_columns, infer_task, prepare_labels
from keel.data._profile import CategoricalStats, NumericStats, Profile, bin_edges
from keel.data._schema import (
    ColumnSchema,
    FieldError,
    Schema,
    Violation,
    infer_schema,
    mixed_type_violations,
    read_schema,
    records_to_frame,
    validate_frame,
    write_schema,
)
from keel.data._sources import display_url, load_data, read_dvc, read_sql
from keel.data._split import Splits, encode_row_keys, row_keys, rows_seen, split_frame
from keel.data._validate import ValidationResult, validate_file

__all__ = [
    "PII_ACTIONS",
    "SUPPORTED_SUFFIXES",
    "CategoricalStats",
    "ColumnSchema",
    "Dataset",
    "FeatureScore",
    "FieldError",
    "LabelInfo",
    "NumericStats",
    "PiiReport",
    "PiiScanner",
    "Profile",
    "Schema",
    "Splits",
    "ValidationResult",
    "Violation",
    "bin_edges",
    "check_columns",
    "check_duplicates",
    "check_single_feature_leakage",
    "class_balance",
    "content_digest",
    "display_url",
    "duplicates_across",
    "encode_row_keys",
    "infer_schema",
    "infer_task",
    "ingest",
    "load_data",
    "mixed_type_violations",
    "prepare_labels",
    "protect",
    "read_columns",
    "read_dvc",
    "read_schema",
    "read_sql",
    "read_table",
    "records_to_frame",
    "row_keys",
    "rows_seen",
    "single_feature_scores",
    "snapshot",
    "split_frame",
    "text_columns",
    "validate_file",
    "validate_frame",
    "write_schema",
]
