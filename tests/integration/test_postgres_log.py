"""The prediction log on a real PostgreSQL server (a throwaway cluster on loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from keel.serving import PredictionLog, read_log
from tests.conftest import postgres_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_cluster("postgres") as url:
        yield url


def test_prediction_log_on_postgresql(postgres_url: str) -> None:
    log = PredictionLog(postgres_url, flush_seconds=0.05, redact={"name": "drop"})
    model = {"name": "income", "version": "3"}
    log.record(
        "a1", model, [{"age": 30, "name": "Ada"}, {"age": 41}], [">50K", "<=50K"], [0.7, 0.2], 1.5
    )
    log.record("b2", model, [{"age": 52}], ["<=50K"], None, 0.9, route="canary")
    assert log.has_request("a1") == 2 and log.has_request("zz") == 0
    log.feedback("a1", ["<=50K", ">50K"])
    log.feedback("a1", [">50K", ">50K"])  # corrected: the last labels win
    time.sleep(0.2)
    log.close()
    rows = read_log(postgres_url)
    assert [(r["request_id"], r["row"], r["route"]) for r in rows] == [
        ("a1", 0, "champion"),
        ("a1", 1, "champion"),
        ("b2", 0, "canary"),
    ]
    assert rows[0]["inputs"] == {"age": 30} and rows[0]["score"] == 0.7
    assert [r["label"] for r in rows] == [">50K", ">50K", None]
    assert rows[2]["prediction"] == "<=50K" and rows[2]["score"] is None
