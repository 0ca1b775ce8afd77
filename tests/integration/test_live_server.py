"""Against a real `keel serve`: the prediction log (SIGTERM loses nothing; kill -9 loses
at most the last flush interval and never corrupts it), keel loadtest, a KServe v2
client, keel build."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from keel._version import __version__
from keel.cli import app
from keel.serving import read_log
from tests.conftest import free_port, keel_in, start_server, train_project

pytestmark = pytest.mark.integration
FLUSH = 0.2


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("logged")
    train_project(root, adult_frame, serving={"log_flush_seconds": FLUSH})
    return root


def _rows(adult_frame: pd.DataFrame) -> list[dict]:
    return json.loads(adult_frame.drop(columns=["income"]).head(2).to_json(orient="records"))


def _logged(root: Path) -> set[str]:
    url = f"sqlite:///{root / '.keel' / 'predictions.db'}"
    return {r["request_id"] for r in read_log(url)}


def test_sigterm_loses_no_prediction(project: Path, adult_frame: pd.DataFrame) -> None:
    # a flush interval longer than the test: only the drain on shutdown can save the rows
    path = project / "keel.yaml"
    original = path.read_text()
    config = json.loads(original)
    path.write_text(json.dumps({**config, "serving": {"log_flush_seconds": 60}}))
    try:
        process, url = start_server(project)
    finally:
        path.write_text(original)
    answered = []
    with httpx.Client(timeout=30) as client:
        for _ in range(60):
            answer = client.post(f"{url}/predict", json={"instances": _rows(adult_frame)})
            assert answer.status_code == 200
            answered.append(answer.json()["request_id"])
    process.send_signal(signal.SIGTERM)  # at once: the last answers are still queued
    # uvicorn drains, runs the shutdown (the log's final commit), then re-raises the
    # signal: the exit status says SIGTERM, the log says nothing was lost
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert set(answered) <= _logged(project)


def test_kill_9_under_load_loses_at_most_the_last_flush_and_never_corrupts(
    project: Path, adult_frame: pd.DataFrame
) -> None:
    process, url = start_server(project)
    answered: list[tuple[float, str]] = []
    stop = threading.Event()
    rows = _rows(adult_frame)

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = client.post(f"{url}/predict", json={"instances": rows})
                except httpx.HTTPError:
                    return  # the server is gone
                if answer.status_code == 200:
                    answered.append((time.monotonic(), answer.json()["request_id"]))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    killed_at = time.monotonic()
    process.kill()  # SIGKILL mid-load: no drain, no flush
    process.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    database = project / ".keel" / "predictions.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    logged = _logged(project)
    # answered more than a flush interval (plus scheduling slack) before the kill: logged
    safe = [rid for when, rid in answered if when < killed_at - FLUSH - 0.5]
    assert len(safe) > 20
    missing = [rid for rid in safe if rid not in logged]
    assert not missing, f"{len(missing)} of {len(safe)} lost"


def test_loadtest_is_the_evidence_for_the_gate_and_the_card(project: Path) -> None:
    process, url = start_server(project)
    try:
        done = keel_in(
            project, "loadtest", url, "--requests", "200", "--concurrency", "4", "--json"
        )
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["requests"] == 200 and result["statuses"] == {"200": 200}
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["error_rate"] == 0 and result["throughput"] > 0
    checked = keel_in(project, "check", "income/1", "--json")
    gate = {g["gate"]: g for g in json.loads(checked.stdout)["gates"]}["load_tested"]
    assert gate["status"] == "pass" and "200 requests at concurrency 4" in gate["evidence"]
    card = keel_in(project, "card", "income/1", "--json")
    markdown = Path(json.loads(card.stdout)["paths"]["model_card_md"]).read_text()
    assert "p50 ms" in markdown and "not measured yet" not in markdown


def test_loadtest_refuses_other_hosts_and_says_when_no_server(project: Path) -> None:
    far = keel_in(project, "loadtest", "http://203.0.113.5:8000", "--requests", "1")
    assert far.exit_code == 2 and "this machine only" in far.stderr
    nobody = keel_in(project, "loadtest", f"http://127.0.0.1:{free_port()}", "--requests", "1")
    assert nobody.exit_code == 2 and "no Keel server" in nobody.stderr
    huge = keel_in(project, "loadtest", "--requests", "10000000")
    assert huge.exit_code == 2 and "--requests must be" in huge.stderr
    assert "Traceback" not in far.output + nobody.output + huge.output


def test_a_kserve_v2_client_gets_the_same_answers_as_predict(
    project: Path, adult_frame: pd.DataFrame
) -> None:
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    process, url = start_server(project)
    try:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("income")
        meta = client.get_model_metadata("income")
        frame = adult_frame.drop(columns=["income"]).dropna().head(6)
        inputs = []
        for spec in meta["inputs"]:
            column = frame[spec["name"]]
            values = (
                column.astype(object).to_numpy()
                if spec["datatype"] == "BYTES"
                else column.to_numpy(np.int64 if spec["datatype"] == "INT64" else np.float64)
            )
            tensor = triton.InferInput(spec["name"], [len(frame)], spec["datatype"])
            tensor.set_data_from_numpy(values, binary_data=False)
            inputs.append(tensor)
        outputs = [
            triton.InferRequestedOutput("predictions", binary_data=False),
            triton.InferRequestedOutput("probabilities", binary_data=False),
        ]
        result = client.infer("income", inputs, outputs=outputs)
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predictions")]
        proba = result.as_numpy("probabilities")
        rows = json.loads(frame.to_json(orient="records"))
        expected = httpx.post(f"{url}/predict", json={"instances": rows}).json()
        assert labels == expected["predictions"]
        classes = meta["parameters"]["classes"]
        assert proba.shape == (len(frame), len(classes))
        for row, probs in zip(proba.tolist(), expected["probabilities"], strict=True):
            assert row == pytest.approx([probs[c] for c in classes], abs=1e-9)
        with pytest.raises(InferenceServerException, match="binary tensor data"):
            binary = triton.InferInput("age", [1], "INT64")
            binary.set_data_from_numpy(np.array([40], dtype=np.int64), binary_data=True)
            client.infer("income", [binary])
        with pytest.raises(InferenceServerException, match="not served here"):
            client.get_model_metadata("other")
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_build_writes_deployment_files_that_parse_and_run_keel_serve(project: Path) -> None:
    import re

    import yaml

    done = keel_in(project, "build", "income@champion", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    paths = {Path(p).name: Path(p) for p in result["paths"].values()}
    assert set(paths) == {
        "Dockerfile",
        "kserve.yaml",
        "kubernetes.yaml",
        "README.md",
        "grafana-dashboard.json",
    }
    grafana = json.loads(paths["grafana-dashboard.json"].read_text())
    assert grafana["title"] == "Keel — income@champion" and len(grafana["panels"]) >= 8
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", paths["Dockerfile"].read_text(), re.M)[1])
    # the image installs the Keel release that wrote it, by its name on the index
    assert f'pip install --no-cache-dir "keel-ml=={__version__}"' in paths["Dockerfile"].read_text()
    deployment, service = yaml.safe_load_all(paths["kubernetes.yaml"].read_text())
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    inference = yaml.safe_load(paths["kserve.yaml"].read_text())
    predictor = inference["spec"]["predictor"]["containers"][0]
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    for argv in (
        entry,
        [*container["command"], *container["args"]],
        [*predictor["command"], *predictor["args"]],
    ):
        assert argv[0] == "keel" and argv[1] in commands
        assert argv[argv.index("--model") + 1] == "income@champion"
        helptext = keel_in(project, argv[1], "--help").stdout
        for option in (a for a in argv[2:] if a.startswith("--")):
            assert option in helptext, option
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert deployment["metadata"]["labels"]["keel.version"] == result["version"]
    before = paths["kubernetes.yaml"].read_text()
    again = keel_in(project, "build", "income@champion")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert paths["kubernetes.yaml"].read_text() == before
    assert keel_in(project, "build", "income@champion", "--force").exit_code == 0
    unknown = keel_in(project, "build", "income@nope")
    assert unknown.exit_code == 2 and "no alias 'nope'" in unknown.stderr
    pinned = keel_in(project, "build", "income/1")
    assert pinned.exit_code == 2 and "NAME@ALIAS" in pinned.stderr
