"""Promote, rollback and history against a real MLflow SQLite registry."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.registry import (
    ModelRef,
    alias_version,
    assign_alias,
    history,
    mlflow_scope,
    promote,
    rollback,
)

pytestmark = pytest.mark.integration

NAME = "income"


def _register(uri: str, gates: dict[str, str]) -> str:
    """A real run + registered version (a tiny model) with the given gate tags."""
    from sklearn.dummy import DummyClassifier

    with mlflow_scope(uri) as client:
        experiment = mlflow.set_experiment("aliases")
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            mlflow.set_tags({f"keel.gate.{k}": v for k, v in gates.items()})
            model = DummyClassifier().fit([[0], [1]], [0, 1])
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops")
        version = mlflow.register_model(info.model_uri, NAME)
        ref = ModelRef(NAME, str(version.version))
        if gates and all(v == "passed" for v in gates.values()):
            assign_alias(client, ref, uri)
        return ref.version


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv("KEEL_USER", "ada")
    monkeypatch.chdir(tmp_path)  # the runs' artifacts land in tmp_path/mlruns
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_promote_rollback_history_tell_one_story(registry: str) -> None:
    passed = {"baseline": "passed", "fairness": "passed"}
    v1 = _register(registry, passed)
    v2 = _register(registry, passed)
    v3 = _register(registry, {"baseline": "passed", "fairness": "failed"})
    with mlflow_scope(registry) as client:
        assert alias_version(client, NAME, "champion") == v1
        assert alias_version(client, NAME, "challenger") == v2
        promote(client, registry, NAME, v2, reason="better on AUC")
        assert alias_version(client, NAME, "champion") == v2
        back = rollback(client, registry, NAME, reason="latency regression")
        assert (back.from_version, back.to_version, back.action) == (v2, v1, "rollback")
        assert alias_version(client, NAME, "champion") == v1
        events = history(client, NAME)
        # v3 failed a gate: registered without an alias, so no event
        assert [(e.alias, e.from_version, e.to_version, e.action) for e in events] == [
            ("champion", None, v1, "register"),
            ("challenger", None, v2, "register"),
            ("champion", v1, v2, "promote"),
            ("champion", v2, v1, "rollback"),
        ]
        assert all(e.who == "ada" for e in events)
        assert events[2].why == "better on AUC" and events[3].why == "latency regression"
        assert [e.when for e in events] == sorted(e.when for e in events)
        assert v3 == "3"


def test_refusals_leave_the_registry_unchanged(registry: str) -> None:
    from keel.errors import KeelFinding, KeelInputError, ModelNotFoundError

    v1 = _register(registry, {"baseline": "passed"})
    failed = _register(registry, {"fairness": "failed"})
    with mlflow_scope(registry) as client:
        before = history(client, NAME)
        with pytest.raises(KeelFinding, match="failed the gate"):
            promote(client, registry, NAME, failed)
        with pytest.raises(KeelInputError, match="--force needs --reason"):
            promote(client, registry, NAME, failed, force=True)
        with pytest.raises(KeelFinding, match="only from staging"):
            promote(client, registry, NAME, v1, to="production")
        assert promote(client, registry, NAME, v1) is None  # already there: a no-op
        with pytest.raises(ModelNotFoundError, match="no version 9; versions: 1, 2"):
            promote(client, registry, NAME, "9")
        with pytest.raises(ModelNotFoundError, match="no registered model 'incme'"):
            promote(client, registry, "incme", v1)
        with pytest.raises(KeelInputError, match="no previous version"):
            rollback(client, registry, NAME)
        assert history(client, NAME) == before
        assert alias_version(client, NAME, "champion") == v1
        # forcing is possible, with a reason, and says so
        forced = promote(client, registry, NAME, failed, force=True, reason="hotfix")
        assert forced.action == "force" and "gates overridden: fairness" in forced.why
        # environments: staging first, then production
        promote(client, registry, NAME, v1, to="staging")
        event = promote(client, registry, NAME, v1, to="production")
        assert (event.alias, event.to_version) == ("production", v1)


def _race(args: tuple[str, str, str]) -> str:
    registry, version, user = args
    os.environ["KEEL_USER"] = user
    from keel.errors import KeelFinding

    with mlflow_scope(registry) as client:
        try:
            moved = promote(client, registry, NAME, version, reason=f"race {user}")
            return "moved" if moved is not None else "already there"
        except KeelFinding as exc:
            return f"refused: {exc}"


def test_racing_promotions_leave_a_consistent_registry(registry: str) -> None:
    versions = [_register(registry, {"baseline": "passed"}) for _ in range(5)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        outcomes = pool.map(_race, [(registry, v, f"user{v}") for v in versions[1:]] * 2)
    with mlflow_scope(registry) as client:
        events = [e for e in history(client, NAME) if e.alias == "champion"]
        champion = alias_version(client, NAME, "champion")
    moves = events[1:]  # after the first registration
    assert len(moves) == outcomes.count("moved") >= 1
    # every move starts where the previous one ended: no lost update
    chain = [events[0].to_version] + [e.to_version for e in moves]
    assert [e.from_version for e in moves] == chain[:-1]
    assert champion == chain[-1]


def test_cli_promote_rollback_history(registry: str, tmp_path: Path) -> None:
    # toy versions (no Keel package): no Definition-of-Done gate required, only the
    # gates recorded on their runs count
    config = {"name": NAME, "data": "x.csv", "target": "y", "gates": {"required": []}}
    (tmp_path / "keel.yaml").write_text(json.dumps(config))
    (tmp_path / "x.csv").write_text("y\n1\n")
    v1 = _register(registry, {"baseline": "passed"})
    v2 = _register(registry, {"baseline": "passed"})
    runner = CliRunner()
    env = {"MLFLOW_TRACKING_URI": registry, "KEEL_USER": "grace"}
    result = runner.invoke(app, ["promote", NAME, v2, "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["to_version"] == v2
    result = runner.invoke(app, ["rollback", NAME, "--reason", "bad canary"], env=env)
    assert result.exit_code == 0 and f"version {v2} → {v1}" in result.stderr
    listed = runner.invoke(app, ["history", NAME, "--json"], env=env)
    payload = json.loads(listed.stdout)
    assert payload["aliases"]["champion"] == v1
    assert [e["action"] for e in payload["events"]][-2:] == ["promote", "rollback"]
    table = runner.invoke(app, ["history", NAME], env=env)
    assert table.exit_code == 0 and "bad canary" in table.stdout
    missing = runner.invoke(app, ["rollback", "nope"], env=env)
    assert missing.exit_code == 2 and "no registered model 'nope'" in missing.stderr
    assert "Traceback" not in missing.output
