"""Keel against a shared MLflow tracking server (PostgreSQL behind it, a separate artifact
store), started on loopback: a teammate in another folder predicts and serves what one
trained; two `keel run`s at once register both versions with a complete history; a
server that is down is one clear line, fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import SMALL_PROJECT, free_port, keel_in, postgres_cluster, start_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory):
    """``(tracking URL, artifact folder)`` of `mlflow server` on PostgreSQL, on loopback."""
    artifacts = tmp_path_factory.mktemp("team-artifacts")
    with postgres_cluster("keel") as database:
        port = free_port()
        log = (artifacts.parent / "mlflow-server.log").open("w")
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                database,
                "--artifacts-destination",
                str(artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, "mlflow server exited"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        try:
            yield url, artifacts
        finally:
            server.terminate()
            server.wait(timeout=60)
            log.close()


def _project(root: Path, frame: pd.DataFrame, url: str, **extra) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "adult.csv", index=False)
    config = {**SMALL_PROJECT, "tracking_uri": url, **extra}
    (root / "keel.yaml").write_text(json.dumps(config))
    return root


def test_a_teammate_uses_what_another_trained(team_server, tmp_path, adult_frame):
    url, artifacts = team_server
    mine = _project(tmp_path / "mine", adult_frame, url)
    done = keel_in(mine, "run", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["tracking_uri"] == url
    assert any(artifacts.rglob("MLmodel"))  # the package is in the shared store
    # another folder (another laptop): nothing local, everything from the server
    theirs = _project(tmp_path / "theirs", adult_frame.head(50), url)
    adult_frame.drop(columns=["income"]).head(200).to_csv(theirs / "people.csv", index=False)
    scored = keel_in(theirs, "predict", "income@champion", "people.csv", "out.csv", "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["scored"] == 200
    process, served = start_server(theirs, "--poll-seconds", "0")
    try:
        rows = json.loads(adult_frame.drop(columns=["income"]).head(3).to_json(orient="records"))
        answer = httpx.post(f"{served}/predict", json={"instances": rows}, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
    finally:
        process.terminate()
        process.wait(timeout=60)
    # the registry probe of a no-op run asks the server's REST API as MLflow's client does
    from mlflow import MlflowClient

    from keel.registry._probe import probe_version

    version = MlflowClient(url, url).get_model_version("income", "1")
    found = probe_version(url, "income", "1")
    assert found.exists and found.run_id == version.run_id and found.tags == version.tags
    assert probe_version(url, "income", "999").exists is False
    assert probe_version(url, "no-such-model", "1").exists is False
    for command in (["history", "income"], ["check", "income@champion", "--no-record"]):
        shown = keel_in(theirs, *command)
        assert shown.exit_code in (0, 1), shown.output  # check may find gates unmet
        assert "Traceback" not in shown.output


def test_two_runs_at_once_register_both_versions_and_lose_no_history(
    team_server, tmp_path, adult_frame
):
    url, _ = team_server
    roots = [
        _project(tmp_path / f"run{seed}", adult_frame, url, name="race", seed=seed)
        for seed in (1, 2)
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "keel", "run", "--json"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in roots
    ]
    outputs = [p.communicate(timeout=600) for p in runs]
    for process, (_out, err) in zip(runs, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
    versions = sorted(json.loads(out)["model"]["version"] for out, _ in outputs)
    assert versions == ["1", "2"]
    shown = json.loads(keel_in(roots[0], "history", "race", "--json").stdout)
    events = shown["events"]
    assert sorted(e["to_version"] for e in events) == ["1", "2"]  # one event per version
    assert shown["aliases"]["champion"] in ("1", "2")
    # the moves are serialised: each event's "from" is what the alias held before it
    held: dict[str, str | None] = {}
    for event in events:
        assert event["from_version"] == held.get(event["alias"]), events
        held[event["alias"]] = event["to_version"]
    listed = keel_in(roots[0], "history", "keel.registry-lock")
    assert listed.exit_code == 2  # the lock is gone once the moves are done


def test_a_server_that_is_down_is_one_clear_line(tmp_path, adult_frame):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    root = _project(tmp_path / "down", adult_frame, url)
    started = time.monotonic()
    done = keel_in(root, "run")
    assert done.exit_code == 2, done.output
    assert "cannot reach the MLflow tracking server" in done.output
    assert "Traceback" not in done.output and time.monotonic() - started < 60
    for command in (["history", "income"], ["predict", "income", "a.csv", "b.csv"]):
        again = keel_in(root, *command)
        assert again.exit_code == 2 and "cannot reach" in again.output, again.output
    assert not (root / "b.csv").exists()
