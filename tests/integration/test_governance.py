"""Governance for real: semantic versions, release tags in git, retirement."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from keel.registry import mlflow_scope
from tests.conftest import SMALL_PROJECT, keel_in

pytestmark = pytest.mark.integration


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _run(root: Path, config: dict, *options: str) -> dict:
    (root / "keel.yaml").write_text(yaml.safe_dump(config))
    _git(root, "add", "keel.yaml")
    _git(root, "commit", "-qm", "config", "--allow-empty")
    done = keel_in(root, "run", "--json", *options, env={"KEEL_USER": "ada"})
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def _keel(root: Path, *args: str):
    return keel_in(root, *args, env={"KEEL_USER": "ada"})


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("governance")
    adult_frame.to_csv(root / "adult.csv", index=False)
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "ada@example.org")
    _git(root, "config", "user.name", "Ada")
    (root / ".gitignore").write_text(".keel/\nmlruns/\n")
    _git(root, "add", ".gitignore", "adult.csv")
    _git(root, "commit", "-qm", "data")
    return root


def _versions(root: Path) -> dict[str, dict]:
    done = _keel(root, "history", "income", "--json")
    assert done.exit_code == 0, done.output
    return {v["version"]: v for v in json.loads(done.stdout)["versions"]}


def test_semantic_versions_follow_the_interface_and_tag_the_release(project: Path) -> None:
    base = {**SMALL_PROJECT, "release": {"git_tag": True}}
    first = _run(project, base)
    assert first["model"]["version"] == "1"
    assert _versions(project)["1"]["semver"] == "1.0.0"

    # only the card's words change: the same version, a PATCH release
    again = _run(project, {**base, "card": {"intended_use": "Governance tests only."}})
    assert again["model"]["version"] == "1"
    assert _versions(project)["1"]["semver"] == "1.0.1"
    card = Path(again["reports"]["model_card_md"]).read_text()
    assert "1.0.1" in card

    # an input removed: a request that worked with version 1 may be refused: MAJOR
    narrower = {**base, "ignore_columns": ["fnlwgt", "education-num"]}
    second = _run(project, narrower)
    versions = _versions(project)
    assert versions[second["model"]["version"]]["semver"] == "2.0.0"
    assert "input 'education-num' removed" in versions["2"]["semver_why"]

    # the same inputs, another model (a new seed, every stage again): MINOR
    third = _run(project, {**narrower, "seed": 7}, "--no-cache")
    assert _versions(project)[third["model"]["version"]]["semver"] == "2.1.0"

    # going live tags the commit it was trained from, with the data digest
    done = _keel(project, "promote", "income", "3", "--force", "--reason", "release test")
    assert done.exit_code == 0, done.output
    assert "income-v2.1.0" in _git(project, "tag", "--list")
    message = _git(project, "tag", "-n9", "income-v2.1.0")
    assert "registry version 3" in message and third["data"]["digest"] in message
    with mlflow_scope(third["tracking_uri"]) as client:
        commit = client.get_model_version("income", "3").tags["keel.commit"]
    assert _git(project, "rev-list", "-n1", "income-v2.1.0") == commit
    # promoting again changes nothing, and the tag is not moved
    done = _keel(project, "promote", "income", "3")
    assert done.exit_code == 0 and "nothing changed" in done.output


def test_retire_keeps_the_evidence_and_nothing_loads_it_again(project: Path) -> None:
    if "3" not in _versions(project):
        pytest.skip("needs the versions of the test above")  # run alone with -k
    # the champion is refused without a successor, and nothing changes
    done = _keel(project, "retire", "income", "3", "--reason", "superseded")
    assert done.exit_code == 1 and "--successor" in done.output
    assert _versions(project)["3"]["status"] == "live"

    done = _keel(project, "retire", "income", "1", "--reason", "trained on the 2024 sample")
    assert done.exit_code == 0, done.output
    versions = _versions(project)
    assert versions["1"]["status"] == "retired" and versions["1"]["aliases"] == []
    assert versions["1"]["retired"]["who"] == "ada"
    events = json.loads(_keel(project, "history", "income", "--json").stdout)["events"]
    assert events[-1]["action"] == "retire" and events[-1]["from_version"] == "1"

    # no alias, no server, no batch scoring takes it; its card is still there
    done = _keel(project, "promote", "income", "1", "--force", "--reason", "x")
    assert done.exit_code == 2 and "retired" in done.output
    done = _keel(project, "serve", "--model", "income/1", "--port", "1")
    assert done.exit_code == 2 and "is retired" in done.output
    assert "Traceback" not in done.output
    rows = pd.read_csv(project / "adult.csv").drop(columns=["income"]).head(5)
    rows.to_parquet(project / "rows.parquet")
    done = _keel(project, "predict", "income/1", "rows.parquet", "scored.parquet")
    assert done.exit_code == 2 and "is retired" in done.output
    assert not (project / "scored.parquet").exists()
    done = _keel(project, "card", "income/1")
    assert done.exit_code == 0, done.output

    # a successor takes over through the gates, then the champion retires; a successor
    # that fails a gate is refused and nothing is retired
    retire_3 = ["retire", "income", "3", "--successor", "2", "--reason", "v2 suffices", "--json"]
    done = _keel(project, *retire_3)
    assert done.exit_code == 1 and "failed the gate(s) fairness" in done.output
    assert _versions(project)["3"]["status"] == "live"
    config = yaml.safe_load((project / "keel.yaml").read_text())
    config["gates"] = {"waivers": {"fairness": {"reason": "no sensitive data", "author": "ada"}}}
    (project / "keel.yaml").write_text(yaml.safe_dump(config))
    done = _keel(project, *retire_3)
    assert done.exit_code == 0, done.output
    record = json.loads(done.stdout)
    assert record["successor"] == "2" and "champion" not in record["aliases_removed"]
    versions = _versions(project)
    assert "champion" in versions["2"]["aliases"] and versions["3"]["status"] == "retired"
    table = _keel(project, "history", "income").output
    assert "retired by ada" in table and "2.0.0" in table


def test_runbook_impact_assessment_and_feature_dictionary(
    tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    adult_frame.to_csv(tmp_path / "adult.csv", index=False)
    config = {
        **SMALL_PROJECT,
        "card": {
            "contacts": ["ml-oncall@example.org", "+44 20 7946 0000"],
            "misuses": ["Deciding credit from census attributes"],
            "intended_use": "Teaching.",
        },
        "features": {"age": "Age in years at the census", "hours-per-week": "Usual hours"},
        "privacy": {"retention_days": 30, "purpose": "Monitoring the model's quality"},
        "serving": {"api_keys": [{"name": "ops", "sha256": "a" * 64, "scopes": ["admin"]}]},
        "monitoring": {
            "alerts": [{"metric": "latency_p95_ms", "threshold": 50, "severity": "critical"}]
        },
    }
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(config))
    done = _keel(tmp_path, "run", "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    folder = Path(out["reports"]["model_card_md"]).parent
    runbook = (folder / "runbook.md").read_text()
    for words in (
        "ml-oncall@example.org",
        "keel serve --model income@champion",
        "keel serve --model income/1",
        "keel rollback income",
        "POST | /predict | predict",
        "GET | /metrics | admin",
        "ops | admin",
        "latency_p95_ms above 50",  # the configured rule, with what to do
        "scale out",
        "pipeline failure",
        "Retention: 30 days",
        "keel retire income 1",
    ):
        assert words in runbook, words
    assert "a" * 64 not in runbook  # the key's hash stays in keel.yaml
    impact = (folder / "impact_assessment.md").read_text()
    assert "Deciding credit from census attributes" in impact
    assert "Not stated: set card.mitigations" in impact
    assert "Not stated: set card.business_objective" in impact
    sheet = (folder / "datasheet.md").read_text()
    assert "| age | integer | feature | Age in years at the census |" in sheet
    assert "not described (features.education in keel.yaml)" in sheet
    assert "Monitoring the model's quality" in sheet and "30 days" in sheet
    card = (folder / "model_card.md").read_text()
    assert "runbook.md" in card and "impact_assessment.md" in card
    # logged on the run, beside the card, and rebuilt by `keel card`
    from mlflow import MlflowClient

    logged = {
        f.path for f in MlflowClient(out["tracking_uri"]).list_artifacts(out["run_id"], "card")
    }
    assert {"card/runbook.md", "card/impact_assessment.md", "card/runbook.html"} <= logged
    done = _keel(tmp_path, "card", "income/1", "--json")
    assert done.exit_code == 0, done.output
    written = json.loads(done.stdout)["paths"]
    assert "ml-oncall@example.org" in Path(written["runbook_md"]).read_text()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["retire", "income", "2"], "--reason is required"),
        (["retire", "income", "99", "--reason", "x"], "no version 99"),
        (["retire", "nobody", "1", "--reason", "x"], "no registered model"),
        (["retire", "income", "2", "--successor", "2", "--reason", "x"], "another version"),
    ],
)
def test_bad_retire_input_is_one_line_and_exit_2(project: Path, args: list[str], says: str) -> None:
    if not _versions(project):
        pytest.skip("needs a registered version")
    before = _versions(project)
    done = _keel(project, *args)
    assert done.exit_code == 2, done.output
    assert says in done.output and "Traceback" not in done.output
    assert _versions(project) == before


def test_a_robustness_limit_withholds_the_alias_and_check_judges_the_new_gates(
    tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    adult_frame.to_csv(tmp_path / "adult.csv", index=False)
    config = {**SMALL_PROJECT, "robustness": {"max_flipped_within_budget": 0.0, "search_rows": 30}}
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(config))
    done = _keel(tmp_path, "run", "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    found = out["assessment"]["robustness"]
    assert found["verdict"] == "failed" and found["minimal_change"]["flipped_within_budget"] > 0
    assert out["model"]["alias"] is None  # like a failed behaviour test: no alias
    page = Path(out["reports"]["html"]).read_text()
    assert "Robustness" in page and "Rules that mimic the model" in page
    card = Path(out["reports"]["model_card_md"]).read_text()
    assert "## Robustness" in card and "fidelity" in card

    shown = _keel(tmp_path, "run")  # the terminal summary of the same (reused) run
    assert "Robustness failed" in shown.output and "Runbook:" in shown.output
    check = json.loads(_keel(tmp_path, "check", "income/1", "--json").stdout)
    gates = {g["gate"]: g for g in check["gates"]}
    assert gates["robustness"]["status"] == "fail"
    assert "rows flipped within 0.5 sd" in gates["robustness"]["evidence"]
    assert gates["runbook"]["status"] == "fail" and "card.contacts" in gates["runbook"]["evidence"]
    assert gates["impact_assessment"]["status"] == "fail"
    assert "card.misuses" in gates["impact_assessment"]["evidence"]
    done = _keel(tmp_path, "promote", "income", "1")
    assert done.exit_code == 1 and "robustness" in done.output

    # people say what only they can say: the documents follow on the same version
    config["card"] = {
        "contacts": ["oncall@example.org"],
        "intended_use": "Teaching.",
        "misuses": ["Credit decisions"],
        "mitigations": ["Human review of every decision"],
        "business_objective": "Show the lifecycle",
    }
    config["gates"] = {"required": ["runbook", "impact_assessment"]}
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(config))
    done = _keel(tmp_path, "run", "--json")
    assert done.exit_code == 0, done.output
    check = json.loads(_keel(tmp_path, "check", "income/1", "--json").stdout)
    gates = {g["gate"]: g for g in check["gates"]}
    assert gates["runbook"]["status"] == "pass" and gates["impact_assessment"]["status"] == "pass"
    assert check["passed"]


def test_opt_out_is_answered_not_stored_and_forget_erases_a_subject(
    tmp_path: Path, adult_frame: pd.DataFrame
) -> None:
    import sqlite3
    import time

    import httpx

    from tests.conftest import start_server

    frame = adult_frame.copy()
    frame.insert(0, "customer_id", [f"c{i}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "adult.csv", index=False)
    config = {
        **SMALL_PROJECT,
        "ignore_columns": ["fnlwgt", "customer_id"],
        "privacy": {"subject_column": "customer_id", "retention_days": 30},
        "serving": {"log_flush_seconds": 0.1},
    }
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(config))
    done = _keel(tmp_path, "run", "--json")
    assert done.exit_code == 0, done.output
    rows = json.loads(frame.drop(columns=["income"]).head(4).to_json(orient="records"))
    process, url = start_server(tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            kept = [http.post("/predict", json={"instances": [r]}).json() for r in rows[:2]]
            answered = http.post("/predict", json={"instances": [rows[2]], "opt_out": True})
            headed = http.post(
                "/predict", json={"instances": [rows[3]]}, headers={"X-Keel-Opt-Out": "yes"}
            )
            assert answered.status_code == 200 and headed.status_code == 200
            assert "predictions" in answered.json()  # answered all the same
            label = http.post(
                "/feedback", json={"request_id": kept[0]["request_id"], "labels": [">50K"]}
            )
            assert label.status_code == 200, label.text
            private = http.post(
                "/feedback",
                json={"request_id": kept[1]["request_id"], "labels": [">50K"], "opt_out": True},
            )
            assert private.json() == {"status": "not stored (opt-out)"}
            time.sleep(0.5)
            metrics = http.get("/metrics").text
            assert "keel_opted_out_total 3.0" in metrics
    finally:
        process.terminate()
        process.wait(timeout=60)
    db = tmp_path / ".keel" / "predictions.db"
    with sqlite3.connect(db) as conn:
        logged = conn.execute("SELECT inputs FROM predictions").fetchall()
        assert len(logged) == 2
        assert not any("c2" in r[0] or "c3" in r[0] for r in logged)  # opted out: not kept
        assert conn.execute("SELECT SUM(requests) FROM opt_outs").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1

    done = _keel(tmp_path, "forget", "--subject", "c0", "--json")
    assert done.exit_code == 0, done.output
    erased = json.loads(done.stdout)
    assert erased["counts"] == {"predictions": 1, "feedback": 1, "outcomes": 0}
    assert erased["versions_holding"][0]["version"] == "1"
    assert "training snapshot" in erased["versions_holding"][0]["held_in"][0]
    with sqlite3.connect(db) as conn:
        left = [r[0] for r in conn.execute("SELECT inputs FROM predictions")]
        assert len(left) == 1 and "c1" in left[0]
        record = conn.execute("SELECT who, kind, counts, note FROM erasures").fetchall()
        assert len(record) == 1 and record[0][1] == "subject"
        assert "c0" not in json.dumps(record)  # who, when, how many: never the id
        # the other row ages past the retention period
        conn.execute("UPDATE predictions SET time = time - 40 * 86400")
    done = _keel(tmp_path, "forget", "--expired", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["counts"]["predictions"] == 1
    listed = json.loads(_keel(tmp_path, "forget", "--list", "--json").stdout)["erasures"]
    assert [e["kind"] for e in listed] == ["subject", "retention"]
    # a subject nobody has seen: nothing erased, still recorded, no version listed
    done = _keel(tmp_path, "forget", "--subject", "nobody-at-all", "--json")
    assert json.loads(done.stdout)["versions_holding"] == []


@pytest.mark.parametrize(
    ("args", "privacy", "says"),
    [
        ([], {"subject_column": "x"}, "say what to do"),
        (["--subject", "a", "--expired"], {"subject_column": "x"}, "not --subject and --expired"),
        (["--expired"], {}, "privacy.retention_days is not set"),
        (["--subject", "a"], {}, "privacy.subject_column is not set"),
        (["--subject", " "], {"subject_column": "x"}, "non-empty id"),
        (["--list", "--log", "bad.db"], {}, "bad.db cannot be used (file is not a database)"),
        (
            ["--expired", "--log", "postgresql+psycopg://ada:secret@127.0.0.1:1/log"],
            {"retention_days": 3},
            "ada:***@127.0.0.1:1/log cannot be used",
        ),
    ],
)
def test_bad_forget_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], privacy: dict, says: str
) -> None:
    (tmp_path / "adult.csv").write_text("age,income\n30,>50K\n")
    (tmp_path / "bad.db").write_text("not a database")
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump({**SMALL_PROJECT, "privacy": privacy}))
    done = _keel(tmp_path, "forget", *args)
    assert done.exit_code == 2, done.output
    assert says in done.output and "Traceback" not in done.output
    assert "secret" not in done.output  # a password in a log URL is not echoed
    assert not (tmp_path / ".keel" / "predictions.db").exists()  # nothing written
    assert (tmp_path / "bad.db").read_text() == "not a database"


def test_forget_without_a_log_creates_none(
    tmp_path: Path,
) -> None:
    (tmp_path / "adult.csv").write_text("age,income\n30,>50K\n")
    config = {**SMALL_PROJECT, "privacy": {"subject_column": "age", "retention_days": 3}}
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump(config))
    for args in (["--subject", "30"], ["--expired"], ["--list"]):
        done = _keel(tmp_path, "forget", *args, "--json")
        assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"erasures": []}
    assert not (tmp_path / ".keel" / "predictions.db").exists()  # no log made for it
