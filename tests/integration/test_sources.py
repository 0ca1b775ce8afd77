"""Real sources: JSON Lines, a SQLite file, PostgreSQL from Debian's packages, git + DVC."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from keel.config import DvcSource, SqlSource, load_config
from keel.data import content_digest, load_data, read_table
from keel.errors import DataError
from keel.pipeline import run_project
from tests.conftest import postgres_cluster

pytestmark = pytest.mark.integration


def _config(root: Path, data, name: str = "income") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "keel.yaml").write_text(
        json.dumps(
            {
                "name": name,
                "data": data,
                "target": "income",
                "candidates": ["dummy", "linear"],
                "budget": 0,
                "cv_folds": 3,
            }
        )
    )
    return root / "keel.yaml"


# -- JSON Lines -----------------------------------------------------------------------------


def test_json_lines_read_like_csv(tmp_path: Path, adult_frame: pd.DataFrame) -> None:
    path = tmp_path / "adult.jsonl"
    adult_frame.to_json(path, orient="records", lines=True)
    frame = read_table(path)
    assert frame.shape == adult_frame.shape
    assert content_digest(frame.astype(adult_frame.dtypes.to_dict())) == content_digest(adult_frame)


def test_json_lines_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": oops}\n')
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        read_table(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        read_table(path)


# -- SQLite ---------------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path, adult_frame: pd.DataFrame) -> Path:
    path = tmp_path / "census.db"
    with sqlite3.connect(path) as connection:
        adult_frame.to_sql("adult", connection, index=False)
    return path


def test_sqlite_source_end_to_end(tmp_path: Path, sqlite_db: Path, adult_frame) -> None:
    root = sqlite_db.parent
    config = load_config(
        _config(
            root, {"url": "sqlite:///census.db", "query": "SELECT * FROM adult WHERE age >= 18"}
        )
    )
    result = run_project(config)
    assert result.data["lineage"]["kind"] == "sql"
    assert result.data["rows"] == int((adult_frame["age"] >= 18).sum())
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    tags = {t.key: t.value for t in run.inputs.dataset_inputs[0].tags}
    assert tags["keel.source.kind"] == "sql" and "age >= 18" in tags["keel.source.query"]
    assert Path(result.data["snapshot"]).is_file()


@pytest.mark.parametrize(
    ("url", "query", "message"),
    [
        ("sqlite:///census.db", "SELECT * FROM nowhere", "no such table: nowhere"),
        ("sqlite:///census.db", "SELECT * FROM adult WHERE 1 = 0", "returned no rows"),
        ("sqlite:///missing.db", "SELECT 1", "no SQLite database at"),
        ("notadb://x", "SELECT 1", "no SQLAlchemy dialect"),
        ("::::", "SELECT 1", "not a valid SQLAlchemy URL"),
    ],
)
def test_sql_errors_are_one_clear_line(sqlite_db: Path, url, query, message) -> None:
    with pytest.raises(DataError, match=message):
        load_data(SqlSource(url=url, query=query), sqlite_db.parent)


def test_sql_passwords_never_appear(sqlite_db: Path) -> None:
    spec = SqlSource(url="postgresql+psycopg://keel:s3cret@127.0.0.1:1/db", query="SELECT 1")
    with pytest.raises(DataError) as info:
        load_data(spec, sqlite_db.parent)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


# -- PostgreSQL from Debian's packages ------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_cluster("keel") as url:
        yield url


def test_postgres_source(postgres: str, tmp_path: Path, adult_frame) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres)
    with engine.begin() as connection:
        adult_frame.to_sql("adult", connection, index=False, if_exists="replace")
    engine.dispose()
    dataset = load_data(
        SqlSource(url=postgres, query="SELECT * FROM adult WHERE \"sex\" = 'Female'"), tmp_path
    )
    assert len(dataset.frame) == int((adult_frame["sex"] == "Female").sum())
    assert dataset.lineage["uri"].startswith("postgresql+psycopg://keel@127.0.0.1")
    config = load_config(
        _config(tmp_path / "pg", {"url": postgres, "query": "SELECT * FROM adult"})
    )
    result = run_project(config)
    assert result.data["rows"] == len(adult_frame) and result.model["alias"] == "champion"


# -- git + DVC ------------------------------------------------------------------------------


def _run(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "k",
        "GIT_AUTHOR_EMAIL": "k@x",
        "GIT_COMMITTER_NAME": "k",
        "GIT_COMMITTER_EMAIL": "k@x",
    }
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    dvc = str(Path(sys.executable).parent / "dvc")
    repo = tmp_path_factory.mktemp("dvcrepo")
    _run("git", "init", "-q", "-b", "main", cwd=repo)
    _run(dvc, "init", "-q", cwd=repo)
    _run(dvc, "config", "core.analytics", "false", cwd=repo)
    adult_frame.head(800).to_csv(repo / "adult.csv", index=False)
    _run(dvc, "add", "-q", "adult.csv", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-q", "-m", "v1 data", cwd=repo)
    _run("git", "tag", "v1", cwd=repo)
    time.sleep(0.01)
    adult_frame.to_csv(repo / "adult.csv", index=False)
    _run(dvc, "add", "-q", "adult.csv", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-q", "-m", "v2 data", cwd=repo)
    _run("git", "tag", "v2", cwd=repo)
    return repo


def test_dvc_reads_each_revision(dvc_repo: Path, adult_frame) -> None:
    old = load_data(DvcSource(dvc="adult.csv", rev="v1"), dvc_repo)
    new = load_data(DvcSource(dvc="adult.csv", rev="v2"), dvc_repo)
    assert len(old.frame) == 800 and len(new.frame) == len(adult_frame)
    assert old.digest != new.digest
    assert old.lineage["rev"] == "v1"
    assert old.lineage["commit"] == _run("git", "rev-parse", "v1", cwd=dvc_repo)


def test_dvc_run_records_the_revision(dvc_repo: Path, tmp_path: Path) -> None:
    config = load_config(
        _config(
            tmp_path / "dvcproj",
            {"dvc": "adult.csv", "rev": "v1", "repo": str(dvc_repo)},
            "dvcincome",
        )
    )
    result = run_project(config)
    assert result.data["lineage"]["rev"] == "v1" and result.data["rows"] == 800
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    tags = {t.key: t.value for t in run.inputs.dataset_inputs[0].tags}
    assert (
        tags["keel.source.rev"] == "v1"
        and tags["keel.source.commit"] == result.data["lineage"]["commit"]
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dvc": "adult.csv", "rev": "v9"}, "cannot read adult.csv@v9"),
        ({"dvc": "other.csv", "rev": "v1"}, "cannot read other.csv@v1"),
    ],
)
def test_dvc_errors(dvc_repo: Path, spec, message) -> None:
    with pytest.raises(DataError, match=message):
        load_data(DvcSource(**spec), dvc_repo)
