"""Erasure in a real SQLite log: by the subject's hash, and in rows logged before it."""

from __future__ import annotations

import json
import sqlite3
import time

from keel.monitoring._privacy import erasures, forget_subject, opted_out, purge_expired
from keel.serving._log import PredictionLog


def _old_log(path) -> None:
    """A log from before subjects (and experiments), holding one row of customer c9."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE predictions (request_id VARCHAR(64), row INTEGER, time FLOAT,"
            " model_name VARCHAR(200), model_version VARCHAR(20), inputs TEXT,"
            " prediction TEXT, score FLOAT, latency_ms FLOAT, route VARCHAR(20),"
            " PRIMARY KEY (request_id, row, route))"
        )
        for request, customer in (("old9", "c9"), ("old99", "c99"), ("odd", "c%9")):
            conn.execute(
                "INSERT INTO predictions VALUES (?, 0, ?, 'm', '1', ?, '1', 0.5, 1.0, 'champion')",
                (request, time.time(), json.dumps({"customer_id": customer, "age": 40})),
            )


def test_forget_finds_new_rows_by_hash_and_old_rows_by_their_inputs(tmp_path) -> None:
    path = tmp_path / "log.db"
    _old_log(path)
    url = f"sqlite:///{path}"
    log = PredictionLog(url, subject_column="customer_id")
    model = {"name": "m", "version": "2"}
    log.record("new9", model, [{"customer_id": "c9"}, {"customer_id": "c1"}], [1, 0], None, 1.0)
    log.record("unit9", model, [{"age": 30}], [1], None, 1.0, "challenger", ("e", "x", "c9"))
    log.feedback("new9", [1, 0])
    log.outcomes([{"unit": "c9", "metric": "conversion", "value": 1.0}])
    log.opted_out("m")
    log.opted_out("m")
    log.close()
    with sqlite3.connect(path) as conn:
        stored = dict(conn.execute("SELECT request_id || ':' || row, subject FROM predictions"))
    assert stored["new9:0"] != stored["new9:1"] and len(stored["new9:0"]) == 64
    assert "c9" not in stored.values()  # the hash, not the id
    assert stored["old9:0"] is None and stored["unit9:0"] is None

    found = forget_subject(url, "c9", "ada", "customer_id", {"versions": []})
    # old9 (inputs), new9 row 0 (hash), unit9 (A/B unit); not c99, not c%9, not c1
    assert found["counts"] == {"predictions": 3, "feedback": 1, "outcomes": 1}
    with sqlite3.connect(path) as conn:
        left = sorted(
            r[0] for r in conn.execute("SELECT request_id || ':' || row FROM predictions")
        )
        labels = conn.execute("SELECT request_id, row FROM feedback").fetchall()
    assert left == ["new9:1", "odd:0", "old99:0"] and labels == [("new9", 1)]
    assert opted_out(url, "m") == 2
    assert forget_subject(url, "c%9", "ada", "customer_id")["counts"]["predictions"] == 1

    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE predictions SET time = time - 10 * 86400 WHERE request_id = 'old99'")
    purged = purge_expired(url, 7, "keel serve", record_empty=False)
    assert purged["counts"]["predictions"] == 1
    assert not purge_expired(url, 7, "keel serve", record_empty=False).get("recorded", True)
    assert [e["kind"] for e in erasures(url)] == ["subject", "subject", "retention"]
