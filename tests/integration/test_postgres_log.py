"""The prediction log on a real PostgreSQL server (a throwaway cluster on loopback)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.serving import PredictionLog, read_log
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    return found[-1] if found and found[-1] else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries not installed (.ci/run installs them)")
    # not under pytest's private tmp: the postgres account must be able to reach it
    folder = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    data, sockets = folder / "data", folder / "sock"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use its own account
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(folder / "pg.log"),
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


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
