"""Data: ingest, content-addressed snapshots, schema inference and validation, splits.

Names are imported on first use (PEP 562): `keel drift` needs `read_table`, not
scikit-learn (leakage checks) or presidio (PII), so the command starts in a fraction of
the time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel._lazy import lazy_getattr as _lazy_getattr

if TYPE_CHECKING:
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
        check_frame,
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
    from keel.tasks import class_balance

_WHERE = {
    "CategoricalStats": ("keel.data._profile", "CategoricalStats"),
    "ColumnSchema": ("keel.data._schema", "ColumnSchema"),
    "Dataset": ("keel.data._ingest", "Dataset"),
    "FeatureScore": ("keel.data._leakage", "FeatureScore"),
    "FieldError": ("keel.data._schema", "FieldError"),
    "LabelInfo": ("keel.data._prepare", "LabelInfo"),
    "NumericStats": ("keel.data._profile", "NumericStats"),
    "PII_ACTIONS": ("keel.data._pii", "ACTIONS"),
    "PiiReport": ("keel.data._pii", "PiiReport"),
    "PiiScanner": ("keel.data._pii", "PiiScanner"),
    "Profile": ("keel.data._profile", "Profile"),
    "SUPPORTED_SUFFIXES": ("keel.data._ingest", "SUPPORTED_SUFFIXES"),
    "Schema": ("keel.data._schema", "Schema"),
    "Splits": ("keel.data._split", "Splits"),
    "ValidationResult": ("keel.data._validate", "ValidationResult"),
    "Violation": ("keel.data._schema", "Violation"),
    "bin_edges": ("keel.data._profile", "bin_edges"),
    "check_columns": ("keel.data._prepare", "check_columns"),
    "check_frame": ("keel.data._schema", "check_frame"),
    "check_duplicates": ("keel.data._leakage", "check_duplicates"),
    "check_single_feature_leakage": ("keel.data._leakage", "check_single_feature_leakage"),
    "class_balance": ("keel.tasks", "class_balance"),
    "content_digest": ("keel.data._ingest", "content_digest"),
    "display_url": ("keel.data._sources", "display_url"),
    "duplicates_across": ("keel.data._leakage", "duplicates_across"),
    "encode_row_keys": ("keel.data._split", "encode_row_keys"),
    "infer_schema": ("keel.data._schema", "infer_schema"),
    "infer_task": ("keel.data._prepare", "infer_task"),
    "ingest": ("keel.data._ingest", "ingest"),
    "load_data": ("keel.data._sources", "load_data"),
    "mixed_type_violations": ("keel.data._schema", "mixed_type_violations"),
    "prepare_labels": ("keel.data._prepare", "prepare_labels"),
    "protect": ("keel.data._pii", "protect"),
    "read_columns": ("keel.data._ingest", "read_columns"),
    "read_dvc": ("keel.data._sources", "read_dvc"),
    "read_schema": ("keel.data._schema", "read_schema"),
    "read_sql": ("keel.data._sources", "read_sql"),
    "read_table": ("keel.data._ingest", "read_table"),
    "records_to_frame": ("keel.data._schema", "records_to_frame"),
    "row_keys": ("keel.data._split", "row_keys"),
    "rows_seen": ("keel.data._split", "rows_seen"),
    "single_feature_scores": ("keel.data._leakage", "single_feature_scores"),
    "snapshot": ("keel.data._ingest", "snapshot"),
    "split_frame": ("keel.data._split", "split_frame"),
    "text_columns": ("keel.data._pii", "text_columns"),
    "validate_file": ("keel.data._validate", "validate_file"),
    "validate_frame": ("keel.data._schema", "validate_frame"),
    "write_schema": ("keel.data._schema", "write_schema"),
}


__getattr__ = _lazy_getattr(__name__, _WHERE, globals())

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
    "check_frame",
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
