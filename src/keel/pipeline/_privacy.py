"""`keel forget`: erase a data subject from the prediction log, find them in training data.

The log's rows go (``keel.monitoring``'s erasure). Registered packages and the data
snapshots they were trained on are immutable evidence, so they are not edited: the
command lists every version of the model whose training snapshot holds the subject,
and, for recommenders, whose package keeps them in its user-group map (the sensitive
group of each training user, kept for fairness monitoring). Removing the subject
from those means retraining without them and retiring the versions — the output says
so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from keel.config import ProjectConfig, resolve_settings
from keel.errors import KeelInputError
from keel.families import FAMILIES


def subject_column(config: ProjectConfig) -> str:
    """The request field (and training column) that identifies a data subject."""
    column = config.privacy.subject_column or FAMILIES.for_task(config.task).subject_column(config)
    if not column:
        raise KeelInputError(
            "privacy.subject_column is not set: name the field that identifies a person"
            " (e.g. privacy: {subject_column: customer_id}) in keel.yaml"
        )
    return column


def _in_package(config: ProjectConfig, settings: Any, version: str, subject: str) -> list[str]:
    """Where the version's package itself names ``subject`` (its family says)."""
    from keel.registry import package_documents

    family = FAMILIES.for_task(config.task)
    if not family.subject_documents:
        return []  # the family's packages name no person
    try:
        _, documents = package_documents(
            f"{config.name}/{version}", settings.tracking_uri, family.subject_documents
        )
    except Exception:  # a package that cannot be read: its snapshot still answers
        documents = {}
    return family.subject_in_package(documents, subject)


def _snapshot_holds(path: Path, column: str, subject: str) -> bool | None:
    """Whether the snapshot's ``column`` holds ``subject`` (None: no such column/file)."""
    if not path.exists():
        return None
    try:
        names = pq.read_schema(path).names
        if column not in names:
            return None
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    except OSError:
        return None
    return any(v is not None and str(v) == subject for v in values)


def versions_holding(config: ProjectConfig, subject: str) -> list[dict[str, Any]]:
    """Every version of the project's model whose training data or package holds ``subject``."""
    from keel.registry import mlflow_scope, retired_of, semver_of

    settings = resolve_settings(config)
    column = subject_column(config)
    found = []
    held_by: dict[str, bool | None] = {}  # versions often share a snapshot: read it once
    with mlflow_scope(settings.tracking_uri) as client:
        versions = client.search_model_versions(f"name = '{config.name}'")
    for v in sorted(versions, key=lambda v: int(v.version)):
        tags = v.tags or {}
        where = []
        digest = tags.get("keel.dataset.digest")
        if digest:
            if digest not in held_by:
                held_by[digest] = _snapshot_holds(
                    settings.data_store / digest / "data.parquet", column, subject
                )
            held = held_by[digest]
            if held:
                where.append(f"training snapshot {digest[:12]} ({column})")
            elif held is None:
                where.append(f"unknown: snapshot {digest[:12]} is not here or has no {column}")
        where += _in_package(config, settings, str(v.version), subject)
        if where:
            found.append(
                {
                    "version": str(v.version),
                    "semver": semver_of(tags),
                    "status": "retired" if retired_of(tags) else "live",
                    "held_in": where,
                }
            )
    return found


__all__ = ["subject_column", "versions_holding"]
