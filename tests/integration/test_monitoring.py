"""Monitoring against the real thing: a served model, its prediction log, labels through
/feedback, `keel monitor` raising one alert to a webhook on loopback, the dashboard in
headless Chromium, `keel drift` against the package's reference."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import WebhookReceiver, keel_in, start_server, train_project

pytestmark = pytest.mark.integration
OUTPUT = Path(__file__).parents[1] / "output"
WINDOW = 200


@pytest.fixture(scope="module")
def receiver():
    hook = WebhookReceiver()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame, receiver: WebhookReceiver
) -> Path:
    """A trained project whose server answered calm rows, then rows with a shift."""
    root = tmp_path_factory.mktemp("monitored")
    train, later = adult_frame.iloc[:1200], adult_frame.iloc[1200:]
    monitoring = {
        "window": WINDOW,
        "min_rows": 50,
        "alerts": [
            {"metric": "drift_share", "threshold": 0.1, "severity": "critical"},
            {"metric": "accuracy", "threshold": 0.5},
        ],
        "sinks": [
            {"type": "jsonl", "path": ".keel/alerts.jsonl"},
            {"type": "webhook", "url": receiver.url, "timeout_seconds": 5, "retries": 2},
        ],
    }
    train_project(
        root,
        train,
        sensitive_features=["sex"],
        serving={"log_flush_seconds": 0.1},
        monitoring=monitoring,
    )
    # 400 rows as they came, then 400 with older people working longer hours
    calm = later.iloc[:400]
    shifted = later.iloc[400:800].assign(
        age=lambda f: f.age + 12, **{"hours-per-week": lambda f: f["hours-per-week"] + 10}
    )
    process, url = start_server(root)
    try:
        with httpx.Client(timeout=30) as client:
            for part in (calm, shifted):
                for i in range(0, len(part), 20):
                    rows = part.iloc[i : i + 20]
                    body = json.loads(rows.drop(columns=["income"]).to_json(orient="records"))
                    answer = client.post(f"{url}/predict", json={"instances": body})
                    assert answer.status_code == 200, answer.text
                    labelled = client.post(
                        f"{url}/feedback",
                        json={
                            "request_id": answer.json()["request_id"],
                            "labels": rows["income"].tolist(),
                        },
                    )
                    assert labelled.status_code == 200, labelled.text
            page = client.get(f"{url}/dashboard")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            (root / "served-dashboard.html").write_text(page.text)
            assert page.headers["x-keel-cache"] == "miss"
            again = client.get(f"{url}/dashboard")  # nothing written since: the same page
            assert again.headers["x-keel-cache"] == "hit" and again.text == page.text
            relabel = {"request_id": answer.json()["request_id"], "labels": rows["income"].tolist()}
            assert client.post(f"{url}/feedback", json=relabel).status_code == 200
            time.sleep(0.05)
            assert client.get(f"{url}/dashboard").headers["x-keel-cache"] == "miss"  # a write
            assert client.get(f"{url}/dashboard?window=week").status_code == 422
    finally:
        process.terminate()
        process.wait(timeout=60)
    return root


def test_monitor_finds_the_shift_and_alerts_once(served: Path, receiver: WebhookReceiver) -> None:
    done = keel_in(served, "monitor", "--json", "--html", str(served / "dashboard.html"))
    assert done.exit_code == 1, done.output  # new alerts are a finding
    found = json.loads(done.stdout)
    assert found["rows"] == 800 and [w["rows"] for w in found["windows"]] == [WINDOW] * 4
    drifted = [w["drift"]["drifted_columns"] for w in found["windows"]]
    assert drifted[:2] == [[], []], drifted
    assert all({"age", "hours-per-week"} <= set(d) for d in drifted[2:]), drifted
    # labels arrived through /feedback: accuracy per window, fairness per group
    for window in found["windows"]:
        assert window["metrics"]["labelled_rows"] == WINDOW
        assert 0.6 < window["metrics"]["accuracy"] <= 1.0
        assert set(window["fairness"]["sex"]) == {"Female", "Male"}
    assert {"age", "hours-per-week"} <= set(found["skew"]["drifted_columns"])
    # one incident (windows 2 and 3) is one alert, in the file and at the webhook
    assert len(found["alerts"]) == 1
    alert = found["alerts"][0]
    assert alert["model"]["name"] == "income" and alert["window"]["index"] == 2
    assert {"age", "hours-per-week"} <= {f["column"] for f in alert["features"]}
    assert [a["id"] for a in receiver.received] == [alert["id"]]
    lines = (served / ".keel" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [alert["id"]]
    assert [d["error"] for d in found["deliveries"]] == [None, None]
    # run again: nothing new, nothing sent
    again = keel_in(served, "monitor", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["alerts"] == [] and len(receiver.received) == 1
    # the evidence is on the version
    check = keel_in(served, "check", "--json", "--no-record")
    gates = {g["gate"]: g for g in json.loads(check.stdout)["gates"]}
    assert gates["drift"]["status"] == "pass", gates["drift"]
    assert gates["dashboard"]["status"] == "pass", gates["dashboard"]


def test_an_alert_retrains_a_challenger_on_production_rows(served: Path) -> None:
    from mlflow import MlflowClient

    (served / ".keel" / "predictions.db.alerts.json").unlink()  # the shift alerts anew
    done = keel_in(served, "monitor", "--json", "--retrain")
    assert done.exit_code == 1, done.output
    found = json.loads(done.stdout)
    again = found["retrain"]
    assert again["retrained"] and again["triggers"] == [found["alerts"][0]["id"]]
    assert 700 < again["production_rows"] <= 800  # the labelled rows (duplicates dropped)
    assert again["model"]["name"] == "income" and again["model"]["version"] == "2"
    # the champion moves only by the release policy; either way the steps are recorded
    client = MlflowClient(tracking_uri=f"sqlite:///{served / '.keel' / 'mlflow.db'}")
    tags = client.get_run(again["run_id"]).data.tags
    assert json.loads(tags["keel.retrain.trigger"])[0]["id"] == found["alerts"][0]["id"]
    assert tags["keel.retrain.from_version"] == "1"
    assert tags["keel.retrain.production_rows"] == str(again["production_rows"])
    monitored = client.get_model_version("income", "1").tags
    assert json.loads(monitored["keel.retrained_by"])["run_id"] == again["run_id"]
    # nothing new the next time: no alert, no retraining
    quiet = keel_in(served, "monitor", "--json", "--retrain")
    assert quiet.exit_code == 0 and not json.loads(quiet.stdout)["retrain"]["retrained"]


def test_dashboards_render_in_a_real_browser(served: Path, browser) -> None:
    if not (served / "dashboard.html").exists():
        assert keel_in(served, "monitor", "--no-alerts", "--html", "dashboard.html").exit_code == 0
    OUTPUT.mkdir(exist_ok=True)
    for name in ("dashboard.html", "served-dashboard.html"):
        rendered = browser(served / name)
        assert not [c for c in rendered.console if "rror" in c], rendered.console
        assert rendered.requests == []
        assert rendered.dom.count("<svg") >= 5
        assert "feature(s) drift — age" in rendered.dom  # amber: no dataset drift
        assert rendered.dom.count("<polyline") >= 4  # drift, latency, performance, fairness
        shutil.copy(rendered.screenshot, OUTPUT / f"monitor-{name.removesuffix('.html')}.png")


def test_keel_drift_against_the_packages_reference(served: Path, adult_frame: pd.DataFrame) -> None:
    current = adult_frame.iloc[1200:].assign(age=lambda f: f.age + 12)
    current.to_csv(served / "current.csv", index=False)
    done = keel_in(served, "drift", "income@champion", "current.csv", "--json")
    assert done.exit_code == 0, done.output  # one column of 13: no dataset drift
    found = json.loads(done.stdout)
    assert found["drifted_columns"] == ["age"]
    assert {c["reference_rows"] for c in found["columns"]} == {718}  # the training rows
    assert "fnlwgt" not in {c["column"] for c in found["columns"]}  # not a model feature


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("monitor", "--window", "week"), "--window"),
        (("monitor", "nobody@champion"), "nobody"),
        (("monitor", "--log", "missing.db"), "no prediction log"),
        (("drift", "income@champion", "absent.csv"), "absent.csv"),
        (("drift", "nobody@champion", "adult.csv"), "nobody"),
    ],
)
def test_bad_monitoring_input_is_a_clear_error(served: Path, args: tuple, message: str) -> None:
    done = keel_in(served, *args)
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output
