"""The family contract: one suite, every family Keel knows, the dummy plug-in included.

Parametrised over ``keel.families.FAMILIES`` — the built-ins and every family an
installed package declares under the ``keel.families`` entry point (the test
environment installs ``tests/resources/keel-dummy-family``, a constant-score model Keel
has never seen). On a tiny real fixture per family: ``keel run`` → the version and run
record ``keel.family``/``keel.task`` → plain ``mlflow.pyfunc.load_model`` → ``keel
serve`` (a real server) → an answer → the prediction log → ``keel monitor`` → ``keel
card`` → ``keel check``; schemathesis on the served OpenAPI (no server error); and a hot
swap of the served version under load (no failed request).

A new family adds its fixture to ``CONTRACT`` (a test fails until it does).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from keel.families import FAMILIES
from tests.conftest import SMALL_PROJECT, keel_in, movielens_project, start_server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fixture:
    """A family's tiny project and what its served route takes."""

    write: Callable[[Path, Any], None]  # (root, request) -> writes data and keel.yaml
    route: str
    body: dict[str, Any]
    pyfunc_input: pd.DataFrame
    vary: dict[str, Any]  # keel.yaml change that makes a second version


def _tabular(root: Path, request: Any) -> None:
    frame = request.getfixturevalue("adult_frame").head(400)
    frame.to_csv(root / "adult.csv", index=False)
    (root / "keel.yaml").write_text(json.dumps({**SMALL_PROJECT, "candidates": ["lightgbm"]}))


def _recommendation(root: Path, request: Any) -> None:
    movielens_project(root, users=80, candidates=["ease"], trials=1)


def _retrieval(root: Path, request: Any) -> None:
    project = root / "project"
    shutil.copytree(ROOT / "docs", root / "docs")
    project.mkdir()
    shutil.copy(ROOT / "examples" / "keel_docs" / "queries.jsonl", project / "queries.jsonl")
    config = yaml.safe_load((ROOT / "examples" / "keel_docs" / "keel.yaml").read_text())
    config.update({"data": "../docs", "candidates": ["bm25"], "budget": 5})
    config["retrieval"].update({"chunk_sizes": [128], "passages": [3]})
    (project / "keel.yaml").write_text(yaml.safe_dump(config))


def _constant(root: Path, request: Any) -> None:
    rows = pd.DataFrame({"x": range(120), "y": [float(i % 7) for i in range(120)]})
    rows.to_csv(root / "data.csv", index=False)
    (root / "keel.yaml").write_text(
        "name: const\ndata: data.csv\ntarget: y\ntask: constant\nconstant: {statistic: median}\n"
    )


ADULT_ROW = {
    "age": 39, "workclass": "State-gov", "fnlwgt": 77516, "education": "Bachelors",
    "education-num": 13, "marital-status": "Never-married", "occupation": "Adm-clerical",
    "relationship": "Not-in-family", "race": "White", "sex": "Male", "capital-gain": 2174,
    "capital-loss": 0, "hours-per-week": 40, "native-country": "United-States",
}  # fmt: skip

CONTRACT: dict[str, Fixture] = {
    "tabular": Fixture(
        _tabular,
        "/predict",
        {"instances": [ADULT_ROW]},
        pd.DataFrame([ADULT_ROW]).drop(columns=["fnlwgt"]),
        {"seed": 7},
    ),
    "recommendation": Fixture(
        _recommendation,
        "/recommend",
        {"user_id": 3, "k": 5},
        pd.DataFrame({"user_id": ["3"]}),
        {"seed": 7},
    ),
    "retrieval": Fixture(
        _retrieval,
        "/ask",
        {"query": "How do I roll back a model?"},
        pd.DataFrame({"query": ["How do I roll back a model?"]}),
        {"seed": 7},
    ),
    "constant": Fixture(
        _constant,
        "/score",
        {"rows": [{"x": 1}]},
        pd.DataFrame({"x": [1.0]}),
        {"card": {"owners": ["contract suite"]}},  # what its register stage reads
    ),
}


def test_every_family_has_a_contract_fixture() -> None:
    assert set(CONTRACT) == set(FAMILIES), "add the new family's tiny project to CONTRACT"
    assert "constant" in FAMILIES  # the out-of-tree dummy is installed and found


@dataclass
class Trained:
    name: str
    family: str
    root: Path
    run: dict[str, Any]
    url: str
    fixture: Fixture


def _project_root(root: Path) -> Path:
    return root / "project" if (root / "project" / "keel.yaml").exists() else root


@pytest.fixture(scope="module", params=sorted(CONTRACT))
def trained(request, tmp_path_factory) -> Iterator[Trained]:
    family = request.param
    if family not in FAMILIES:
        pytest.fail(f"family {family!r} has a fixture but is not registered")
    fixture = CONTRACT[family]
    root = tmp_path_factory.mktemp(f"contract-{family}")
    fixture.write(root, request)
    project = _project_root(root)
    done = keel_in(project, "run", "--json")
    assert done.exit_code in (0, 1), done.output  # 1: a gate withheld the alias
    run = json.loads(done.stdout)
    process, url = start_server(
        project,
        "--poll-seconds",
        "0.5",
        "--model",
        f"{run['model']['name']}/{run['model']['version']}",
    )
    yield Trained(run["model"]["name"], family, project, run, url, fixture)
    process.terminate()
    process.wait(timeout=60)
    assert "Traceback" not in (project / "serve.log").read_text()


def _client(trained: Trained):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{trained.root / '.keel' / 'mlflow.db'}")


def test_run_version_and_package_record_the_family(trained: Trained) -> None:
    version = trained.run["model"]["version"]
    client = _client(trained)
    tags = client.get_model_version(trained.name, version).tags
    assert tags["keel.family"] == trained.family
    assert tags["keel.task"] in FAMILIES[trained.family].tasks
    assert client.get_run(trained.run["run_id"]).data.tags["keel.family"] == trained.family
    from keel.registry import package_metadata

    meta = package_metadata(
        f"{trained.name}/{version}", f"sqlite:///{trained.root / '.keel' / 'mlflow.db'}"
    )
    assert meta["family"] == trained.family


def test_a_plain_mlflow_client_loads_and_predicts(trained: Trained) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{trained.root / '.keel' / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(
            f"models:/{trained.name}/{trained.run['model']['version']}"
        )
        out = model.predict(trained.fixture.pyfunc_input)
    finally:
        mlflow.set_tracking_uri("")
    assert len(out) >= 1


def test_one_app_factory_serves_every_family_in_process(trained: Trained) -> None:
    """``keel.serving.create_app`` builds the app on the one core for any family."""
    from fastapi.testclient import TestClient

    from keel.serving import create_app

    uri = f"sqlite:///{trained.root / '.keel' / 'mlflow.db'}"
    family = FAMILIES[trained.family]
    package = family.load(f"{trained.name}/{trained.run['model']['version']}", uri)
    app = create_app(package)
    paths = set(app.openapi()["paths"])
    core = {"/health", "/ready", "/model", "/metrics", "/dashboard", "/experiment"}
    assert core <= paths, core - paths
    assert set(family.capabilities.serves_routes) <= paths
    with TestClient(app) as client:
        assert client.get("/ready").json()["ready"] is True
        model = client.get("/model").json()
        assert model["family"] == trained.family and model["version"] == package.version
        answer = client.post(trained.fixture.route, json=trained.fixture.body)
        assert answer.status_code == 200, answer.text
        assert client.post(trained.fixture.route, content=b"{").status_code == 422


def test_served_answers_are_logged_monitored_carded_and_checked(trained: Trained) -> None:
    for _ in range(6):
        answer = httpx.post(
            trained.url + trained.fixture.route, json=trained.fixture.body, timeout=30
        )
        assert answer.status_code == 200, answer.text
    model = httpx.get(f"{trained.url}/model", timeout=10).json()
    assert model["name"] == trained.name
    time.sleep(1.5)  # the log flushes in the background
    monitored = keel_in(
        trained.root,
        "monitor",
        "--json",
        "--window",
        "3",
        f"{trained.name}/{trained.run['model']['version']}",
    )
    assert monitored.exit_code in (0, 1), monitored.output
    report = json.loads(monitored.stdout)
    assert report["rows"] >= 6 and report["windows"]
    card = keel_in(
        trained.root, "card", "--json", f"{trained.name}/{trained.run['model']['version']}"
    )
    assert card.exit_code == 0, card.output
    paths = json.loads(card.stdout)["paths"]
    assert {"model_card_md", "model_card_html", "runbook_md"} <= set(paths)
    for path in paths.values():
        assert Path(path).is_file()
    checked = keel_in(
        trained.root, "check", "--json", f"{trained.name}/{trained.run['model']['version']}"
    )
    assert checked.exit_code in (0, 1), checked.output
    gates = {g["gate"]: g for g in json.loads(checked.stdout)["gates"]}
    assert gates["stage_io"]["status"] == "pass", gates["stage_io"]  # every stage recorded


def test_the_served_openapi_survives_fuzzing(trained: Trained) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(f"{trained.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert trained.fixture.route in {op.path for op in operations}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        fuzz()


def test_a_hot_swap_under_load_fails_no_request(trained: Trained) -> None:
    config = trained.root / "keel.yaml"
    loaded = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**loaded, **trained.fixture.vary}, sort_keys=False))
    done = keel_in(trained.root, "run", "--json")
    assert done.exit_code in (0, 1), done.output
    second = json.loads(done.stdout)["model"]["version"]
    first = trained.run["model"]["version"]
    assert second != first
    client = _client(trained)
    client.set_registered_model_alias(trained.name, "contract", first)
    process, url = start_server(
        trained.root, "--poll-seconds", "0.3", "--model", f"{trained.name}@contract"
    )
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                answer = http.post(url + trained.fixture.route, json=trained.fixture.body)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=load) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        client.set_registered_model_alias(trained.name, "contract", second)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if httpx.get(f"{url}/health", timeout=5).json()["model"]["version"] == second:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the server did not swap to the new version")
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        process.terminate()
        process.wait(timeout=60)
    assert failures == []
