"""The registry probe answers as MLflow does, without importing it (no-op runs).

Real stores: a SQLite MLflow store written by MLflow itself; the HTTP path is checked
against a real `mlflow server` in test_team.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from keel.registry._probe import probe_version

pytestmark = pytest.mark.integration


def _as_mlflow_says(client: MlflowClient, name: str, version: str) -> tuple[bool, dict]:
    try:
        found = client.get_model_version(name, version)
    except MlflowException:
        return False, {}
    return True, {"run_id": found.run_id, "tags": dict(found.tags)}


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("probe", artifact_location=str(tmp_path / "art"))
    client.create_registered_model("income")
    for number in range(3):
        run = client.create_run(experiment)
        client.create_model_version(
            "income", f"{tmp_path}/art/{number}", run_id=run.info.run_id,
            tags={"keel.stage.register": f"key{number}", "n": str(number)},
        )  # fmt: skip
    client.set_model_version_tag("income", "2", "keel.rerun", '{"register_key": "key1"}')
    client.delete_model_version("income", "3")  # soft-deleted: MLflow no longer finds it
    return uri, client


def test_the_probe_agrees_with_mlflow_on_a_real_sqlite_store(store) -> None:
    uri, client = store
    for name, version in [("income", "1"), ("income", "2"), ("income", "3"), ("income", "9"),
                          ("other", "1")]:  # fmt: skip
        exists, facts = _as_mlflow_says(client, name, version)
        found = probe_version(uri, name, version)
        assert found.exists is exists, (name, version)
        if exists:
            assert found.run_id == facts["run_id"] and found.tags == facts["tags"]


def test_the_probe_says_when_it_cannot_tell(store, tmp_path: Path, monkeypatch) -> None:
    uri, _ = store
    assert probe_version(f"sqlite:///{tmp_path / 'none.db'}", "income", "1").exists is False
    assert probe_version("postgresql://u@127.0.0.1/db", "income", "1").exists is None
    assert probe_version(uri, "income", "not-a-number").exists is None
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    assert probe_version(f"sqlite:///{tmp_path / 'junk.db'}", "income", "1").exists is None
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:///elsewhere.db")
    assert probe_version(uri, "income", "1").exists is None  # the registry lives elsewhere
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")
    # a server that does not answer: MLflow's client retries and says why
    assert probe_version("http://127.0.0.1:9", "income", "1").exists is None
