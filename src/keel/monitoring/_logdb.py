"""The prediction log's database: its tables, and opening it (with the upgrade of old logs).

The server writes it (``keel.serving``); monitoring and ``keel experiment`` read it. It
lives here, below both, so that either can name its tables.

Tables:

- ``predictions``: one row per answered row (inputs redacted per config), with the
  experiment, arm and unit when the request was part of an A/B test.
- ``feedback``: the ground-truth label of a prediction row (the last one sent wins).
- ``outcomes``: what happened after an answer, per unit or per request (a click, a
  conversion, a value) and the server's own errors during an experiment.
- ``opt_outs``: how many requests asked not to be stored (counted, never stored).
- ``erasures``: each ``keel forget`` (who, when, how many rows per table; not the data).
- ``experiments``: the A/B tests, their settings and state; every worker of every
  server reads the running one from here, so assignment survives restarts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine

metadata = MetaData()
PREDICTIONS = Table(
    "predictions",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("row", Integer, primary_key=True),
    Column("time", Float, nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(20), nullable=False),
    Column("inputs", Text, nullable=False),  # JSON, PII redacted per config
    Column("prediction", Text, nullable=False),  # JSON
    Column("score", Float),  # P(positive) or the predicted value
    Column("latency_ms", Float, nullable=False),
    Column("route", String(20), primary_key=True),  # champion, shadow, canary, challenger
    Column("experiment", String(100), index=True),  # the A/B test the request was in
    Column("arm", String(20)),  # champion | challenger
    Column("unit", String(200)),  # the unit (a user id) the arm was assigned to
    # SHA-256 of the data subject's id (privacy.subject_column): what `keel forget` finds
    Column("subject", String(64), index=True),
)
FEEDBACK = Table(
    "feedback",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("row", Integer, primary_key=True),
    Column("label", Text, nullable=False),  # JSON
    Column("time", Float, nullable=False, index=True),
)
OUTCOMES = Table(
    "outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("unit", String(200), index=True),
    Column("request_id", String(64), index=True),
    Column("metric", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("source", String(20), nullable=False),  # client (/feedback) | server (errors)
    Column("experiment", String(100)),  # set by the server for its own outcomes
    Column("arm", String(20)),
)
EXPERIMENTS = Table(
    "experiments",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("champion_version", String(20), nullable=False),
    Column("challenger_version", String(20), nullable=False),
    Column("split", Float, nullable=False),  # percent of units sent to the challenger
    Column("unit_field", String(100), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("status", String(20), nullable=False),  # running | stopped | concluded
    Column("started", Float, nullable=False),
    Column("stopped", Float),
    Column("settings", Text, nullable=False),  # JSON: metrics, guardrails, plan, alpha
    Column("result", Text),  # JSON: the analysis it was concluded on
)
OPT_OUTS = Table(
    "opt_outs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("requests", Integer, nullable=False),  # answered and not stored: counted only
)
ERASURES = Table(
    "erasures",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("time", Float, nullable=False),
    Column("who", String(200), nullable=False),
    Column("kind", String(20), nullable=False),  # subject | retention
    Column("counts", Text, nullable=False),  # JSON: rows removed per table, never the data
    Column("note", Text),  # JSON: e.g. the model versions trained on the subject
)
# columns added to ``predictions`` after the first release: old logs get them on open
_ADDED = {
    "experiment": "VARCHAR(100)",
    "arm": "VARCHAR(20)",
    "unit": "VARCHAR(200)",
    "subject": "VARCHAR(64)",
}


def sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL (many writers, readers never blocked), a busy timeout, NORMAL sync."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_log(url: str, create: bool = True) -> Engine:
    """An engine on the log at ``url``; with ``create`` its tables exist and are current.

    A log written by an older Keel gets the experiment columns (``ALTER TABLE ... ADD
    COLUMN``: nullable, no rewrite of existing rows).
    """
    engine = create_engine(url, future=True)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", sqlite_pragmas)
    if create:
        metadata.create_all(engine)
        have = {c["name"] for c in inspect(engine).get_columns("predictions")}
        missing = {k: v for k, v in _ADDED.items() if k not in have}
        for name, kind in missing.items():
            try:
                with engine.begin() as conn:  # our own names and types, not input
                    conn.execute(text(f"ALTER TABLE predictions ADD COLUMN {name} {kind}"))
            except Exception:  # another worker added it meanwhile
                have = {c["name"] for c in inspect(engine).get_columns("predictions")}
                if name not in have:
                    raise
        with engine.begin() as conn:  # logs from before these indexes lack them
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_feedback_time ON feedback (time)"))
            conn.execute(
                text(
                    "CREATE INDEX IF NOT EXISTS ix_predictions_experiment"
                    " ON predictions (experiment)"
                )
            )
            conn.execute(
                text("CREATE INDEX IF NOT EXISTS ix_predictions_subject ON predictions (subject)")
            )
    return engine


def last_write(engine: Engine, model_name: str, model_version: str) -> tuple[Any, Any]:
    """When the model's rows and any label were last written (two indexed lookups).

    What a cache of pages computed from the log is keyed by: a new prediction or a new
    label changes it.
    """
    from sqlalchemy import func, select

    with engine.connect() as conn:
        predicted = conn.execute(
            select(func.max(PREDICTIONS.c.time)).where(
                (PREDICTIONS.c.model_name == model_name)
                & (PREDICTIONS.c.model_version == str(model_version))
            )
        ).scalar()
        labelled = conn.execute(select(func.max(FEEDBACK.c.time))).scalar()
    return predicted, labelled


def subject_hash(value: Any) -> str:
    """How a data subject's id is kept beside a logged row: SHA-256 of its text."""
    import hashlib

    return hashlib.sha256(str(value).encode()).hexdigest()


__all__ = [
    "ERASURES",
    "EXPERIMENTS",
    "FEEDBACK",
    "OPT_OUTS",
    "OUTCOMES",
    "PREDICTIONS",
    "last_write",
    "metadata",
    "open_log",
    "sqlite_pragmas",
    "subject_hash",
]
