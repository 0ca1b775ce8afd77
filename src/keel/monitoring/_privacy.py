"""Erasure, retention and opt-out counts in the prediction log.

``forget_subject`` removes one data subject's rows: predictions found by the SHA-256
of their id (the ``subject`` column the server fills from ``privacy.subject_column``),
or — in rows logged before that column existed — by the id in the stored inputs; the
feedback of those rows; outcomes of the subject as an A/B-test unit or of the erased
requests. ``purge_expired`` removes everything older than the retention period.
Both record what they did in ``erasures`` — who, when, how many rows per table —
and never the subject's id or data.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, tuple_

from keel.monitoring._logdb import (
    ERASURES,
    FEEDBACK,
    OPT_OUTS,
    OUTCOMES,
    PREDICTIONS,
    open_log,
    subject_hash,
)

DAY = 86_400.0


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _matches(inputs: str, column: str, subject: str) -> bool:
    try:
        row = json.loads(inputs)
    except ValueError:
        return False
    return isinstance(row, dict) and column in row and str(row[column]) == subject


def forget_subject(
    url: str, subject: str, who: str, column: str | None, note: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Erase ``subject``'s rows from the log at ``url``; returns the erasure record."""
    engine = open_log(url)
    hashed = subject_hash(subject)
    try:
        with engine.begin() as conn:
            keys = conn.execute(
                select(PREDICTIONS.c.request_id, PREDICTIONS.c.row, PREDICTIONS.c.route).where(
                    or_(PREDICTIONS.c.subject == hashed, PREDICTIONS.c.unit == subject)
                )
            ).all()
            if column:  # rows logged before the subject column: look inside the inputs
                pattern = f'%"{_escaped(column)}":%{_escaped(subject)}%'
                older = conn.execute(
                    select(
                        PREDICTIONS.c.request_id,
                        PREDICTIONS.c.row,
                        PREDICTIONS.c.route,
                        PREDICTIONS.c.inputs,
                    ).where(
                        PREDICTIONS.c.subject.is_(None),
                        PREDICTIONS.c.inputs.like(pattern, escape="\\"),
                    )
                ).all()
                keys += [(r[0], r[1], r[2]) for r in older if _matches(r[3], column, subject)]
            keys = sorted(set(keys))
            rows = [(k[0], k[1]) for k in keys]
            requests = sorted({k[0] for k in keys})
            removed = {"predictions": 0, "feedback": 0, "outcomes": 0}
            for at in range(0, len(keys), 300):
                part = keys[at : at + 300]
                removed["predictions"] += conn.execute(
                    delete(PREDICTIONS).where(
                        tuple_(
                            PREDICTIONS.c.request_id, PREDICTIONS.c.row, PREDICTIONS.c.route
                        ).in_(part)
                    )
                ).rowcount
            for at in range(0, len(rows), 300):
                removed["feedback"] += conn.execute(
                    delete(FEEDBACK).where(
                        tuple_(FEEDBACK.c.request_id, FEEDBACK.c.row).in_(rows[at : at + 300])
                    )
                ).rowcount
            removed["outcomes"] += conn.execute(
                delete(OUTCOMES).where(OUTCOMES.c.unit == subject)
            ).rowcount
            for at in range(0, len(requests), 300):
                removed["outcomes"] += conn.execute(
                    delete(OUTCOMES).where(OUTCOMES.c.request_id.in_(requests[at : at + 300]))
                ).rowcount
            record = _record(conn, who, "subject", removed, note)
    finally:
        engine.dispose()
    return record


def purge_expired(url: str, days: int, who: str, record_empty: bool = True) -> dict[str, Any]:
    """Remove rows older than ``days`` days from every table of the log; record it."""
    engine = open_log(url)
    cutoff = time.time() - days * DAY
    try:
        with engine.begin() as conn:
            removed = {
                "predictions": conn.execute(
                    delete(PREDICTIONS).where(PREDICTIONS.c.time < cutoff)
                ).rowcount,
                "feedback": conn.execute(delete(FEEDBACK).where(FEEDBACK.c.time < cutoff)).rowcount,
                "outcomes": conn.execute(delete(OUTCOMES).where(OUTCOMES.c.time < cutoff)).rowcount,
                "opt_outs": conn.execute(delete(OPT_OUTS).where(OPT_OUTS.c.time < cutoff)).rowcount,
            }
            if not record_empty and not any(removed.values()):
                return {"kind": "retention", "counts": removed, "recorded": False}
            found = _record(conn, who, "retention", removed, {"older_than_days": days})
    finally:
        engine.dispose()
    return found


def _record(
    conn: Any, who: str, kind: str, counts: dict[str, int], note: dict[str, Any] | None
) -> dict[str, Any]:
    row = {
        "id": uuid.uuid4().hex,
        "time": time.time(),
        "who": who,
        "kind": kind,
        "counts": json.dumps(counts),
        "note": json.dumps(note) if note else None,
    }
    conn.execute(ERASURES.insert(), [row])
    return {**row, "counts": counts, "note": note}


def erasures(url: str) -> list[dict[str, Any]]:
    """Every recorded erasure and purge, oldest first."""
    engine = open_log(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(select(ERASURES).order_by(ERASURES.c.time)).mappings().all()
    finally:
        engine.dispose()
    return [
        {**r, "counts": json.loads(r["counts"]), "note": json.loads(r["note"] or "null")}
        for r in found
    ]


def opted_out(url: str, model_name: str | None = None, since: float = 0.0) -> int:
    """How many requests asked not to be stored (since ``since``)."""
    engine = open_log(url)
    try:
        with engine.connect() as conn:
            query = select(func.coalesce(func.sum(OPT_OUTS.c.requests), 0)).where(
                and_(
                    OPT_OUTS.c.time >= since,
                    *([OPT_OUTS.c.model_name == model_name] if model_name else []),
                )
            )
            return int(conn.execute(query).scalar() or 0)
    finally:
        engine.dispose()


__all__ = ["erasures", "forget_subject", "opted_out", "purge_expired"]
