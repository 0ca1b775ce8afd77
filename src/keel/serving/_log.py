"""The prediction log: every prediction, durably, from every worker, queryable by monitoring.

Requests only append to an in-memory queue; one writer thread per process commits what
queued in batches, every ``flush_seconds`` (or sooner when a batch fills). SQLite runs
in WAL mode, so several workers append to one file and a reader never blocks them; a
PostgreSQL URL works the same through SQLAlchemy.

The promise, tested: a graceful stop (SIGTERM, Ctrl-C) drains the queue and commits
before the process exits, so nothing is lost; ``kill -9`` loses at most what queued in
the last flush interval, and never corrupts the log (each batch is one transaction).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, inspect, select

from keel.monitoring._logdb import (
    FEEDBACK,
    OPT_OUTS,
    OUTCOMES,
    PREDICTIONS,
    open_log,
    subject_hash,
)

logger = logging.getLogger("keel.serving")

BATCH_ROWS = 2_000
# the order of the values in a row handed to the driver (see PredictionLog._rows)
_ROW = (
    "request_id",
    "row",
    "time",
    "model_name",
    "model_version",
    "inputs",
    "prediction",
    "score",
    "latency_ms",
    "route",
    "experiment",
    "arm",
    "unit",
    "subject",
)
PURGE_SECONDS = 3600.0  # how often a server applies privacy.retention_days


def log_url(target: str, root: Path) -> str:
    """A SQLAlchemy URL for ``target``: a database URL as given, else a SQLite file path."""
    if "://" in target:
        return target
    path = Path(target)
    path = path if path.is_absolute() else root / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class PredictionLog:
    """Append-only prediction and feedback log with a batching writer thread."""

    def __init__(
        self,
        url: str,
        flush_seconds: float = 0.5,
        redact: dict[str, str] | None = None,
        subject_column: str | None = None,
        retention_days: int | None = None,
    ) -> None:
        self.url = url
        self.flush_seconds = flush_seconds
        self.redact = dict(redact or {})
        self.subject_column = subject_column
        self.retention_days = retention_days
        self._purged = 0.0  # when retention was last applied (0: at the first flush)
        self.engine = open_log(url)
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        names = list(_ROW)
        quoted = ", ".join(f'"{n}"' for n in names)
        self._insert = (
            f"INSERT INTO predictions ({quoted}) VALUES ({', '.join([mark] * len(names))})"  # noqa: S608 (our own column names)
        )
        self._pending: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._scanner: Any = None
        self.written = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="keel-prediction-log", daemon=True)
        self._thread.start()

    # --- the hot path: append only ---------------------------------------------------

    def record(
        self,
        request_id: str,
        model: dict[str, Any],
        instances: list[dict[str, Any]],
        predictions: list[Any],
        scores: list[float] | None,
        latency_ms: float,
        route: str = "champion",
        arm: tuple[str, str, str] | None = None,
    ) -> None:
        """Queue one answer (the writer thread splits it into rows, redacts, commits).

        ``arm`` is ``(experiment, arm, unit)`` when the request was part of an A/B test.

        One ``deque.append`` per request (atomic under the GIL, no lock): everything
        per row happens on the writer thread, off the request's path.
        """
        self._pending.append(
            (
                "prediction",
                (
                    request_id,
                    time.time(),
                    model["name"],
                    model["version"],
                    instances,
                    predictions,
                    scores,
                    latency_ms,
                    route,
                    arm,
                ),
            )
        )

    def opted_out(self, model_name: str) -> None:
        """Count one request that asked not to be stored (nothing of it is kept)."""
        self._pending.append(("opt_out", (model_name,)))

    def feedback(self, request_id: str, labels: list[Any]) -> None:
        """Queue ground-truth labels for the rows of ``request_id``, in order."""
        self._pending.append(("feedback", (request_id, time.time(), labels)))

    def outcomes(self, rows: list[dict[str, Any]]) -> None:
        """Queue outcomes (dicts: ``metric``, ``value``, ``unit`` and/or ``request_id``).

        The server's own outcomes also carry ``source``, ``experiment`` and ``arm``.
        """
        now = time.time()
        self._pending.append(
            (
                "outcomes",
                tuple(
                    {
                        "time": now,
                        "unit": None if r.get("unit") is None else str(r["unit"]),
                        "request_id": r.get("request_id"),
                        "metric": r["metric"],
                        "value": float(r.get("value", 1.0)),
                        "source": r.get("source", "client"),
                        "experiment": r.get("experiment"),
                        "arm": r.get("arm"),
                    }
                    for r in rows
                ),
            )
        )

    # --- the writer ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
            self._retain()
        self.flush()

    def _retain(self) -> None:
        """Apply ``retention_days`` at the first flush and every ``PURGE_SECONDS``."""
        if self.retention_days is None or time.monotonic() - self._purged < PURGE_SECONDS:
            return
        self._purged = time.monotonic()
        from keel.monitoring._privacy import purge_expired

        try:
            found = purge_expired(self.url, self.retention_days, "keel serve", record_empty=False)
        except Exception as exc:  # never take the server down for the log
            logger.error("prediction log: retention purge failed: %s", type(exc).__name__)
            return
        if found.get("recorded", True):
            logger.info("prediction log: purged rows older than %d days", self.retention_days)

    def flush(self) -> int:
        """Commit everything queued now (one transaction per batch); rows written."""
        with self._lock:
            total = 0
            while True:
                batch: list[tuple[str, tuple[Any, ...]]] = []
                rows = 0
                try:
                    while rows < BATCH_ROWS:
                        item = self._pending.popleft()
                        batch.append(item)
                        rows += _size(item)
                except IndexError:
                    pass
                if not batch:
                    return total
                predictions = [row for k, r in batch if k == "prediction" for row in self._rows(r)]
                # one label per (request, row): a later one in the batch replaces it
                latest = {
                    (request_id, i): {
                        "request_id": request_id,
                        "row": i,
                        "label": json.dumps(label),
                        "time": now,
                    }
                    for request_id, now, labels in (r for k, r in batch if k == "feedback")
                    for i, label in enumerate(labels)
                }
                feedback = list(latest.values())
                outcomes = [o for k, r in batch if k == "outcomes" for o in r]
                skipped: dict[str, int] = {}
                for model_name in (r[0] for k, r in batch if k == "opt_out"):
                    skipped[model_name] = skipped.get(model_name, 0) + 1
                opt_outs = [
                    {"time": time.time(), "model_name": m, "requests": n}
                    for m, n in skipped.items()
                ]
                try:
                    with self.engine.begin() as conn:
                        if predictions:  # the driver's executemany: no per-row ORM work
                            conn.exec_driver_sql(self._insert, predictions)
                        for row in feedback:  # a label may be corrected: last one wins
                            conn.execute(
                                FEEDBACK.delete().where(
                                    (FEEDBACK.c.request_id == row["request_id"])
                                    & (FEEDBACK.c.row == row["row"])
                                )
                            )
                        if feedback:
                            conn.execute(FEEDBACK.insert(), feedback)
                        if outcomes:
                            conn.execute(OUTCOMES.insert(), outcomes)
                        if opt_outs:
                            conn.execute(OPT_OUTS.insert(), opt_outs)
                except Exception as exc:  # never take the server down for the log
                    lost = len(predictions) + len(feedback) + len(outcomes)
                    self.dropped += lost
                    logger.error("prediction log: %d rows not written: %s", lost, exc)
                    continue
                self.written += len(predictions)
                total += len(predictions) + len(feedback) + len(outcomes)

    def _rows(self, answer: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One queued answer as table rows, in the order of ``_ROW``."""
        request_id, now, name, version, instances, predictions, scores, latency, route, arm = answer
        experiment, arm_name, unit = arm if arm is not None else (None, None, None)
        column = self.subject_column
        rows = []
        for i, (inputs, prediction) in enumerate(zip(instances, predictions, strict=False)):
            subject = None
            if column is not None and isinstance(inputs, dict) and inputs.get(column) is not None:
                subject = subject_hash(inputs[column])
            score = scores[i] if scores and i < len(scores) else None
            if score is not None and not math.isfinite(score):
                score = None
            rows.append(
                (
                    request_id,
                    i,
                    now,
                    name,
                    version,
                    _json(self._redacted(inputs)),
                    _json(prediction),
                    score,
                    latency,
                    route,
                    experiment,
                    arm_name,
                    unit,
                    subject,
                )
            )
        return rows

    def _redacted(self, row: Any) -> dict[str, Any]:
        """The inputs as stored: the configured columns dropped or anonymised."""
        if not isinstance(row, dict):
            return {}
        if not self.redact:
            return row
        inputs = dict(row)
        for column, action in self.redact.items():
            if column not in inputs:
                continue
            if action == "drop":
                inputs.pop(column)
            elif isinstance(inputs[column], str) and inputs[column]:
                inputs[column] = self._anonymize(inputs[column], action)
        return inputs

    def _anonymize(self, text: str, action: str) -> str:
        if self._scanner is None:
            from keel.data import PiiScanner

            self._scanner = PiiScanner()
        return self._scanner.anonymize(text, action)[0]

    def has_request(self, request_id: str) -> int:
        """How many rows ``request_id`` has in the log (after committing what queued)."""
        self.flush()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(PREDICTIONS.c.row).where(PREDICTIONS.c.request_id == request_id)
            ).all()
        return len(rows)

    def known_requests(self, request_ids: set[str]) -> set[str]:
        """Which of ``request_ids`` are in the log (after committing what queued)."""
        self.flush()
        found: set[str] = set()
        ids = sorted(request_ids)
        with self.engine.connect() as conn:
            for at in range(0, len(ids), 500):
                query = select(PREDICTIONS.c.request_id).where(
                    PREDICTIONS.c.request_id.in_(ids[at : at + 500])
                )
                found.update(r[0] for r in conn.execute(query))
        return found

    def close(self) -> None:
        """Drain the queue, commit, stop the writer: a graceful stop loses nothing."""
        self._stop.set()
        self._thread.join(timeout=60)
        self.flush()
        self.engine.dispose()


def _json(value: Any) -> str:
    """Compact JSON text (orjson; anything it cannot encode becomes its string form)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _size(item: tuple[str, tuple[Any, ...]]) -> int:
    """Rows a queued item writes."""
    kind, payload = item
    if kind == "prediction":
        return len(payload[4])
    if kind == "opt_out":
        return 1
    return len(payload[2]) if kind == "feedback" else len(payload)


def read_log(
    url: str,
    since: float | None = None,
    limit: int | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> list[dict]:
    """Rows of the prediction log (oldest first), with their feedback label if any.

    ``model_name`` / ``model_version`` keep only that model's (version's) rows.
    """
    engine = create_engine(url, future=True)
    # a log written by an older Keel lacks the experiment columns until a server opens it
    have = {c["name"] for c in inspect(engine).get_columns("predictions")}
    query = (
        select(
            *(c for c in PREDICTIONS.c if c.name in have and c.name != "subject"), FEEDBACK.c.label
        )
        .join(
            FEEDBACK,
            (FEEDBACK.c.request_id == PREDICTIONS.c.request_id)
            & (FEEDBACK.c.row == PREDICTIONS.c.row),
            isouter=True,
        )
        .order_by(PREDICTIONS.c.time, PREDICTIONS.c.request_id, PREDICTIONS.c.row)
    )
    if since is not None:
        query = query.where(PREDICTIONS.c.time >= since)
    if model_name is not None:
        query = query.where(PREDICTIONS.c.model_name == model_name)
    if model_version is not None:
        query = query.where(PREDICTIONS.c.model_version == str(model_version))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    engine.dispose()
    for row in rows:
        row["inputs"] = json.loads(row["inputs"])
        row["prediction"] = json.loads(row["prediction"])
        row["label"] = json.loads(row["label"]) if row["label"] is not None else None
    return rows


def iter_log(
    url: str,
    model_name: str | None = None,
    model_version: str | None = None,
    chunk: int = 100_000,
) -> Iterator[Any]:
    """The log's rows as tables of at most ``chunk`` rows, oldest first (flat memory).

    Keyset pagination on (time, request id, row, route): each page is one indexed range
    query, so reading page 100 costs what page 1 does. The tables have the columns of
    :func:`keel.monitoring.log_frame` (inputs, prediction and label parsed).
    """
    import pandas as pd
    from sqlalchemy import and_, or_

    engine = create_engine(url, future=True)
    try:
        have = {c["name"] for c in inspect(engine).get_columns("predictions")}
        columns = [
            c for c in PREDICTIONS.c if c.name in have and c.name not in ("inputs", "subject")
        ]
        base = (
            select(*columns, PREDICTIONS.c.inputs, FEEDBACK.c.label)
            .join(
                FEEDBACK,
                (FEEDBACK.c.request_id == PREDICTIONS.c.request_id)
                & (FEEDBACK.c.row == PREDICTIONS.c.row),
                isouter=True,
            )
            .order_by(
                PREDICTIONS.c.time, PREDICTIONS.c.request_id, PREDICTIONS.c.row, PREDICTIONS.c.route
            )
            .limit(chunk)
        )
        if model_name is not None:
            base = base.where(PREDICTIONS.c.model_name == model_name)
        if model_version is not None:
            base = base.where(PREDICTIONS.c.model_version == str(model_version))
        last: tuple[Any, ...] | None = None
        while True:
            query = base
            if last is not None:
                t, rid, row, route = last
                p = PREDICTIONS.c
                # a range on the time index first (no sort of the whole log per page),
                # then the tie-breakers among rows of the same time
                query = query.where(
                    and_(
                        p.time >= t,
                        or_(
                            p.time > t,
                            p.request_id > rid,
                            and_(p.request_id == rid, p.row > row),
                            and_(p.request_id == rid, p.row == row, p.route > route),
                        ),
                    )
                )
            with engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            names = list(rows[0]._fields)
            raw = {name: [r[k] for r in rows] for k, name in enumerate(names)}
            for name in ("inputs", "prediction", "label"):  # JSON text, parsed once here
                raw[name] = [orjson.loads(v) if isinstance(v, str) else None for v in raw[name]]
            frame = pd.DataFrame(raw)
            end = rows[-1]
            last = (end.time, end.request_id, int(end.row), end.route)
            yield frame
            if len(rows) < chunk:
                return
    finally:
        engine.dispose()


__all__ = [
    "FEEDBACK",
    "OUTCOMES",
    "PREDICTIONS",
    "PredictionLog",
    "iter_log",
    "log_url",
    "read_log",
]
