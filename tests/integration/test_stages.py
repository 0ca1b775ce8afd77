"""`keel run`'s stages for real: reuse, resume after kill -9, card-only changes, failures."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from keel.config import load_config
from keel.families.tabular.stages import LIFECYCLE, STAGES
from keel.pipeline import Graph, run_project, stage_of
from tests.conftest import SMALL_PROJECT, keel_in

pytestmark = pytest.mark.integration


def _stages(result: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result["stages"]}


def _stored(root: Path) -> set[str]:
    found = set()
    for manifest in (root / ".keel" / "stages").glob("*/manifest.json"):
        if manifest.parent.name.startswith(".tmp-"):
            continue  # an entry being written (renamed into place when complete)
        found.add(json.loads(manifest.read_text())["stage"])
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("stages")
    adult_frame.to_csv(root / "adult.csv", index=False)
    config = {
        **SMALL_PROJECT,
        "sensitive_features": ["sex"],
        "trials": 2,
        "monitoring": {"sinks": [{"type": "jsonl", "path": ".keel/alerts.jsonl"}]},
    }
    (root / "keel.yaml").write_text(yaml.safe_dump(config))
    done = keel_in(root, "run", "--json")
    assert done.exit_code == 0, done.output
    (root / "first.json").write_text(done.stdout)
    return root


def test_every_stage_is_recorded_with_its_lineage_on_the_run(project: Path) -> None:
    first = json.loads((project / "first.json").read_text())
    assert [s["name"] for s in first["stages"]] == list(STAGES)
    assert set(_stages(first).values()) == {"ran"}
    client = MlflowClient(first["tracking_uri"])
    local = client.download_artifacts(first["run_id"], "stages.json", str(project))
    stages = json.loads(Path(local).read_text())
    by_name = {s["name"]: s for s in stages}
    # each stage's inputs are the outputs of the stage that made them
    assert by_name["split"]["inputs"]["schema"] == by_name["validate"]["outputs"]["schema"]
    assert by_name["register"]["inputs"]["shipped"] == by_name["evaluate"]["outputs"]["shipped"]
    metrics = client.get_run(first["run_id"]).data.metrics
    assert {f"stage_seconds.{s}" for s in STAGES} <= set(metrics)
    assert client.get_run(first["run_id"]).info.status == "FINISHED"
    version = client.get_model_version("income", first["model"]["version"])
    assert version.tags["keel.stage.register"] == by_name["register"]["key"]


def test_each_stage_records_its_cpu_seconds_and_peak_memory(project: Path) -> None:
    first = json.loads((project / "first.json").read_text())
    client = MlflowClient(first["tracking_uri"])
    stages = json.loads(
        Path(client.download_artifacts(first["run_id"], "stages.json", str(project))).read_text()
    )
    for stage in stages:
        used = stage["resources"]
        assert used["cpu_seconds"] >= 0.0 and used["peak_mb"] > 10.0, stage
    tune = next(s for s in stages if s["name"] == "tune")["resources"]
    assert tune["cpu_seconds"] > 0.1  # two trials of cross-validation are real work
    manifest = json.loads(
        (
            project
            / ".keel"
            / "stages"
            / next(s["key"] for s in stages if s["name"] == "tune")
            / "manifest.json"
        ).read_text()
    )
    assert manifest["resources"] == tune
    metrics = client.get_run(first["run_id"]).data.metrics
    assert metrics["stage_cpu_seconds.tune"] == pytest.approx(tune["cpu_seconds"])
    assert "stage_peak_mb.evaluate" in metrics
    report = json.loads(
        Path(
            client.download_artifacts(first["run_id"], "reports/report.json", str(project))
        ).read_text()
    )
    rows = {r["stage"]: r for r in report["assessment"]["resources"]}
    assert list(rows)[:3] == ["ingest", "pii", "validate"] and "card" not in rows
    assert rows["tune"]["cpu_seconds"] == pytest.approx(tune["cpu_seconds"])
    page = Path(first["reports"]["html"]).read_text()
    assert "Resources per stage" in page and "peak memory MB" in page


def test_identical_run_reuses_everything_and_registers_nothing(project: Path) -> None:
    first = json.loads((project / "first.json").read_text())
    again = keel_in(project, "run", "--json")
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    assert set(_stages(result).values()) == {"reused"}
    assert result["model"]["version"] == first["model"]["version"]
    assert result["metrics"] == first["metrics"]
    client = MlflowClient(first["tracking_uri"])
    assert len(client.search_model_versions("name = 'income'")) == 1


def test_card_only_change_reruns_only_the_card_of_the_same_version(project: Path) -> None:
    first = json.loads((project / "first.json").read_text())
    config = yaml.safe_load((project / "keel.yaml").read_text())
    config["card"] = {"intended_use": "Ranking census rows for a stages test, nothing else."}
    (project / "keel.yaml").write_text(yaml.safe_dump(config))
    done = keel_in(project, "run", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert [n for n, s in _stages(result).items() if s == "ran"] == ["card"]
    assert result["model"]["version"] == first["model"]["version"]
    card = Path(result["reports"]["model_card_md"]).read_text()
    assert "Ranking census rows for a stages test" in card
    client = MlflowClient(first["tracking_uri"])
    local = client.download_artifacts(first["run_id"], "card/model_card.md", str(project))
    assert "Ranking census rows for a stages test" in Path(local).read_text()
    assert len(client.search_model_versions("name = 'income'")) == 1


@pytest.mark.parametrize("name", STAGES)
def test_a_failure_in_any_stage_names_it_and_alerts_once(
    project: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import keel.families.tabular.stages as run_module

    def boom(inputs: dict, ctx) -> dict:
        raise RuntimeError(f"injected into {name}")

    stages = [dataclasses.replace(s, func=boom) if s.name == name else s for s in LIFECYCLE.stages]
    monkeypatch.setattr(run_module, "LIFECYCLE", Graph(stages, LIFECYCLE.sources))
    alerts = project / ".keel" / "alerts.jsonl"
    before = alerts.read_text().splitlines() if alerts.exists() else []
    config = load_config(project / "keel.yaml")
    with pytest.raises(RuntimeError, match=f"injected into {name}") as caught:
        run_project(config, start_from=name)
    assert stage_of(caught.value) == name
    new = alerts.read_text().splitlines()[len(before) :]
    assert len(new) == 1, new
    alert = json.loads(new[0])
    assert alert["kind"] == "pipeline_failure" and alert["stage"] == name
    assert "injected" not in alert["message"]  # not a Keel error: its kind only, no internals
    assert "RuntimeError" in alert["message"]


def test_internal_error_names_the_stage_on_the_terminal(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.families.tabular.stages as run_module

    def boom(inputs: dict, ctx) -> dict:
        raise RuntimeError("disk on fire")

    stages = [
        dataclasses.replace(s, func=boom) if s.name == "profile" else s for s in LIFECYCLE.stages
    ]
    monkeypatch.setattr(run_module, "LIFECYCLE", Graph(stages, LIFECYCLE.sources))
    done = keel_in(project, "run", "--from", "profile")
    assert done.exit_code == 3
    assert "internal error in stage profile: RuntimeError: disk on fire" in done.stderr


def test_from_an_unknown_stage_is_exit_2(project: Path) -> None:
    done = keel_in(project, "run", "--from", "trian")
    assert done.exit_code == 2
    assert "--from 'trian': not a stage" in done.stderr and "did you mean 'train'" in done.stderr


def test_kill_9_during_tuning_then_run_resumes_after_profile(
    tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    adult_frame.to_csv(tmp_path / "adult.csv", index=False)
    # a fixed number of trials: the resumed run's model (and its gates) do not depend
    # on how busy the machine is, as a wall-clock budget's would
    config = {**SMALL_PROJECT, "budget": 60, "trials": 6}
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"CI": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "keel", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while "profile" not in _stored(tmp_path):
        assert process.poll() is None, "keel run ended before tuning"
        assert time.monotonic() < deadline, "profile was never stored"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # tuning has started (or is about to)
    process.wait(timeout=30)
    assert "tune" not in _stored(tmp_path)
    assert not (tmp_path / ".keel" / "mlflow.db").exists()  # nothing registered yet
    done = keel_in(tmp_path, "run", "--json")
    assert done.exit_code == 0, done.output
    statuses = _stages(json.loads(done.stdout))
    read = ("ingest", "pii", "validate", "split", "leakage", "profile")
    assert all(statuses[s] == "reused" for s in read), statuses
    assert all(statuses[s] == "ran" for s in STAGES[len(read) :]), statuses


def test_a_lost_register_manifest_finds_its_version_instead_of_registering_again(
    project: Path,
) -> None:
    """A crash after registering but before the stage's outputs were stored."""
    first = json.loads((project / "first.json").read_text())
    client = MlflowClient(first["tracking_uri"])
    before = len(client.search_model_versions("name = 'income'"))
    moves = len(client.get_registered_model("income").tags)
    for manifest in (project / ".keel" / "stages").glob("*/manifest.json"):
        if json.loads(manifest.read_text())["stage"] == "register":
            manifest.unlink()
    done = keel_in(project, "run", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert _stages(result)["register"] == "ran"
    assert result["model"]["version"] == first["model"]["version"]
    assert result["model"]["alias"] == "champion"  # kept, not demoted to challenger
    assert len(client.search_model_versions("name = 'income'")) == before
    assert len(client.get_registered_model("income").tags) == moves  # no alias move recorded


def test_the_alias_moves_last_a_failed_card_leaves_no_champion(
    tmp_path: Path, adult_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keel.families.tabular.stages as run_module
    from keel.registry import alias_version, mlflow_scope

    adult_frame.to_csv(tmp_path / "adult.csv", index=False)
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(SMALL_PROJECT))

    def boom(inputs: dict, ctx) -> dict:
        raise OSError("disk full while writing the card")

    stages = [
        dataclasses.replace(s, func=boom) if s.name == "card" else s for s in LIFECYCLE.stages
    ]
    monkeypatch.setattr(run_module, "LIFECYCLE", Graph(stages, LIFECYCLE.sources))
    config = load_config(tmp_path / "keel.yaml")
    with pytest.raises(OSError, match="disk full"):
        run_project(config)
    tracking_uri = f"sqlite:///{(tmp_path / '.keel' / 'mlflow.db').resolve()}"
    with mlflow_scope(tracking_uri) as client:
        assert len(client.search_model_versions("name = 'income'")) == 1  # registered...
        assert alias_version(client, "income", "champion") is None  # ...but no alias yet
        run_id = client.search_model_versions("name = 'income'")[0].run_id
        assert client.get_run(run_id).info.status == "FAILED"
    monkeypatch.undo()
    result = run_project(load_config(tmp_path / "keel.yaml"))
    ran = [s["name"] for s in result.stages if s["status"] == "ran"]
    assert ran == ["card", "alias"] and result.model["alias"] == "champion"
    with mlflow_scope(tracking_uri) as client:
        assert len(client.search_model_versions("name = 'income'")) == 1
        assert client.get_run(run_id).info.status == "FINISHED"
