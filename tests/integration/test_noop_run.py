"""A run with nothing to do: fast because it skips work, never because it skips checks.

An identical re-run imports neither MLflow nor pandas (the registry is asked through
``keel.registry._probe``, the data file by size and time first); a deleted version and a
changed file are still noticed; the idempotent gate's evidence is written once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from keel.pipeline._context import DIGEST_BOOK, file_digest
from tests.conftest import keel_in, train_project

pytestmark = pytest.mark.integration

# `keel run --json` in a fresh process, then which heavy libraries it imported
PROBE = """
import io, json, sys
from keel.cli import main
out, sys.stdout = sys.stdout, io.StringIO()
try:
    main()
except SystemExit as stop:
    code = stop.code
captured, sys.stdout = sys.stdout.getvalue(), out
print(json.dumps({"code": code, "run": json.loads(captured),
                  "imported": sorted(m for m in ("mlflow", "pandas", "sklearn", "numpy")
                                     if m in sys.modules)}))
"""


def _run_in_a_process(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "run", "--json"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame):
    """One project, trained once; the tests below use it in order (each leaves it valid)."""
    root = tmp_path_factory.mktemp("noop")
    return root, train_project(root, adult_frame, sensitive_features=["sex"])


def test_a_noop_run_imports_neither_mlflow_nor_pandas_and_reuses_everything(trained):
    root, first = trained
    # the first re-run writes the idempotent gate's evidence on the version (MLflow)
    evidence = _run_in_a_process(root)
    assert {s["status"] for s in evidence["run"]["stages"]} == {"reused"}
    client = MlflowClient(first["tracking_uri"], first["tracking_uri"])
    tag = client.get_model_version("income", "1").tags["keel.rerun"]
    # every later one has nothing to write: no MLflow, no pandas, no numpy
    again = _run_in_a_process(root)
    assert again["code"] == 0
    assert {s["status"] for s in again["run"]["stages"]} == {"reused"}
    assert again["run"]["model"]["version"] == first["model"]["version"]
    assert again["imported"] == [], again["imported"]
    assert client.get_model_version("income", "1").tags["keel.rerun"] == tag
    check = keel_in(root, "check", "income@champion", "--json", "--no-record")
    gates = {g["gate"]: g for g in json.loads(check.stdout)["gates"]}
    assert gates["idempotent"]["status"] == "pass", gates["idempotent"]["evidence"]


def test_a_changed_data_file_is_noticed_and_a_touched_one_costs_one_read(trained):
    root, _ = trained
    data = root / "adult.csv"
    settled = time.time() - 60
    os.utime(data, (settled, settled))  # an older file: its digest is recorded
    assert _run_in_a_process(root)["run"]["stages"][0]["status"] == "reused"
    book = json.loads((root / ".keel/stages" / DIGEST_BOOK).read_text())
    assert str(data.resolve()) in book  # hashed once, remembered by size, time and inode
    os.utime(data)  # touched: same bytes, new time → hashed again, the same digest
    assert _run_in_a_process(root)["run"]["stages"][0]["status"] == "reused"
    frame = pd.read_csv(data)
    frame.loc[0, "age"] = int(frame.loc[0, "age"]) + 1
    frame.to_csv(data, index=False)
    changed = _run_in_a_process(root)
    assert changed["run"]["stages"][0]["name"] == "ingest"
    assert changed["run"]["stages"][0]["status"] == "ran"


def test_a_deleted_version_is_still_noticed(trained):
    root, first = trained
    client = MlflowClient(first["tracking_uri"], first["tracking_uri"])
    before = _run_in_a_process(root)["run"]["model"]["version"]
    client.delete_model_version("income", before)
    again = _run_in_a_process(root)
    statuses = {s["name"]: s["status"] for s in again["run"]["stages"]}
    assert statuses["register"] == "ran" and statuses["train"] == "reused"
    assert int(again["run"]["model"]["version"]) == int(before) + 1


def test_the_digest_book_trusts_size_time_and_inode_only(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    old = time.time() - 60
    os.utime(data, (old, old))  # settled: older than the racy window
    real = file_digest(data)
    assert file_digest(data, tmp_path / "stages") == real
    book_path = tmp_path / "stages" / DIGEST_BOOK
    book = json.loads(book_path.read_text())
    # what it records is what it returns while the three agree: it does not read the file
    book[str(data.resolve())]["sha256"] = "recorded"
    book_path.write_text(json.dumps(book))
    assert file_digest(data, tmp_path / "stages") == "recorded"
    data.write_text("a,b\n1,3\n")  # same size, new time: read again
    os.utime(data, (old + 1, old + 1))
    assert file_digest(data, tmp_path / "stages") == file_digest(data) != real
    fresh = tmp_path / "fresh.csv"
    fresh.write_text("x\n")  # modified just now: hashed, never recorded
    file_digest(fresh, tmp_path / "stages")
    assert str(fresh.resolve()) not in json.loads(book_path.read_text())
    book_path.write_text("{not json")  # a broken book costs one read, nothing else
    assert file_digest(data, tmp_path / "stages") == file_digest(data)
