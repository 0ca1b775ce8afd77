"""Serving a recommender: POST /recommend on a real server, the log, feedback, batch."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import keel_in, movielens_project, start_server


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("served-movielens")
    movielens_project(
        root,
        users=200,
        candidates=["ease"],
        trials=1,
        monitoring={
            "min_rows": 10,
            "alerts": [{"metric": "cold_start_share", "threshold": 0.3, "severity": "critical"}],
        },
    )
    done = keel_in(root, "run", "--json")
    assert done.exit_code == 0, done.output
    return root, json.loads(done.stdout)


@pytest.fixture(scope="module")
def server(project):
    root, _ = project
    process, url = start_server(root)
    yield url
    process.terminate()
    process.wait(timeout=30)


def _post(url: str, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=10, **kwargs)


def test_known_new_and_history_users(server, project):
    root, out = project
    ratings = pd.read_csv(root / "data" / "ratings.csv")
    seen = set(ratings.loc[ratings["user_id"] == 3, "item_id"].astype(str))
    known = _post(server, {"user_id": 3, "k": 7})
    assert known.status_code == 200, known.text
    body = known.json()
    assert len(body["items"]) == 7 and not body["cold_start"] and body["known_user"]
    assert body["model"] == {"name": "movielens", "version": out["model"]["version"]}
    assert not seen & {i["item_id"] for i in body["items"]}
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    new = _post(server, {"user_id": "somebody-new", "k": 5}).json()
    assert new["cold_start"] and not new["known_user"]
    counts = ratings.drop_duplicates(["user_id", "item_id"])["item_id"].astype(str)
    assert new["items"][0]["item_id"] == counts.value_counts().index[0]
    liked = ["50", "181", "172"]
    folded = _post(server, {"user_id": "somebody-new", "k": 5, "history": liked}).json()
    assert not folded["cold_start"] and not set(liked) & {i["item_id"] for i in folded["items"]}
    leave_out = [i["item_id"] for i in body["items"][:3]]
    excluded = _post(server, {"user_id": 3, "k": 7, "exclude": leave_out}).json()
    assert not set(leave_out) & {i["item_id"] for i in excluded["items"]}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"user_id": 1, "history": ["50", "no-such", "nor-this"]}, 422, "'no-such', 'nor-this'"),
        ({"user_id": 1, "exclude": [999999]}, 422, "not in the catalogue"),
        ({"user_id": 1, "k": 0}, 422, "k:"),
        ({"user_id": 1, "k": 100000}, 422, "k:"),
        ({"user_id": 1, "k": "ten"}, 422, "k:"),
        ({"k": 5}, 422, "user_id"),
        ({"user_id": 1, "surprise": True}, 422, "surprise"),
        ({"user_id": {"$ne": 1}}, 422, "user_id"),
        ([], 422, "body"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(server, body, status, words):
    answer = _post(server, body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"] and "Traceback" not in answer.text
    assert answer.json()["request_id"]


def test_malformed_and_huge_bodies(server):
    bad = httpx.post(
        f"{server}/recommend",
        content=b"{not json",
        timeout=10,
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["error"]
    huge = _post(server, {"user_id": 1, "history": ["50"] * 3_000_000})
    assert huge.status_code == 413


def test_answers_are_logged_and_take_feedback(server, project):
    root, _ = project
    answer = _post(server, {"user_id": 5, "k": 4}).json()
    clicked = [answer["items"][0]["item_id"]]
    ok = httpx.post(
        f"{server}/feedback",
        json={"request_id": answer["request_id"], "items": clicked},
        timeout=10,
    )
    assert ok.status_code == 200, ok.text
    unknown = httpx.post(
        f"{server}/feedback", json={"request_id": "ab" * 16, "items": []}, timeout=10
    )
    assert unknown.status_code == 404
    wrong = httpx.post(
        f"{server}/feedback",
        json={"request_id": answer["request_id"], "items": ["nope"]},
        timeout=10,
    )
    assert wrong.status_code == 422
    with sqlite3.connect(root / ".keel" / "predictions.db") as db:
        logged = db.execute(
            "SELECT inputs, prediction FROM predictions WHERE request_id = ?",
            (answer["request_id"],),
        ).fetchall()
        label = db.execute(
            "SELECT label FROM feedback WHERE request_id = ?", (answer["request_id"],)
        ).fetchall()
    assert json.loads(logged[0][0])["user_id"] == "5"
    assert json.loads(logged[0][1]) == [i["item_id"] for i in answer["items"]]
    assert json.loads(label[0][0]) == clicked


def test_loadtest_and_card_show_the_latency(server, project):
    root, _ = project
    done = keel_in(root, "loadtest", server, "--requests", "300", "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["requests"] == 300 and result["statuses"] == {"200": 300}
    card = keel_in(root, "card", "--json")
    assert card.exit_code == 0, card.output
    text = Path(json.loads(card.stdout)["paths"]["model_card_md"]).read_text()
    assert f"p95 latency {result['p95_ms']:.1f} ms at concurrency 8" in text


def test_batch_equals_the_endpoint_row_by_row(server, project, tmp_path):
    root, _ = project
    users = pd.DataFrame({"user_id": [1, 2, 3, 77, "new-user"]})
    users.to_csv(tmp_path / "users.csv", index=False)
    out = tmp_path / "top.parquet"
    done = keel_in(
        root,
        "recommend",
        "movielens@champion",
        str(tmp_path / "users.csv"),
        str(out),
        "--k",
        "6",
        "--json",
    )
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["users"] == 5 and summary["cold_start_users"] == 1
    written = pd.read_parquet(out)
    for user, rows in written.groupby("user_id", sort=False):
        served = _post(server, {"user_id": user, "k": 6}).json()
        assert rows["item_id"].tolist() == [i["item_id"] for i in served["items"]]
        assert rows["cold_start"].iloc[0] == served["cold_start"]
    again = keel_in(root, "recommend", "movielens@champion", str(tmp_path / "users.csv"), str(out))
    assert again.exit_code == 2 and "exists" in again.output
    bad = pd.DataFrame({"who": [1], "what": [2]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    missing = keel_in(
        root, "recommend", "movielens@champion", str(tmp_path / "bad.csv"), str(tmp_path / "x.csv")
    )
    assert missing.exit_code == 2 and "no column 'user_id'" in missing.output
    assert not (tmp_path / "x.csv").exists()
    # `keel predict` on a recommender: the same lists, and the lineage on the version
    via_predict = tmp_path / "predict.parquet"
    done = keel_in(
        root,
        "predict",
        "movielens@champion",
        str(tmp_path / "users.csv"),
        str(via_predict),
        "--k",
        "6",
        "--json",
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["lineage_tag"].startswith("keel.batch.")
    pd.testing.assert_frame_equal(pd.read_parquet(via_predict), written)


def _serve_and_monitor(server: str, root: Path, html: Path):
    """40 answers (half to strangers), feedback on 20, then `keel monitor` over them."""
    ids = []
    for i in range(40):  # every other request from a user the model never saw
        user = f"stranger-{i}" if i % 2 else str(i % 30 + 1)
        answer = _post(server, {"user_id": user, "k": 5}).json()
        ids.append((answer["request_id"], answer["items"][0]["item_id"]))
    for request_id, item in ids[:20]:
        httpx.post(
            f"{server}/feedback", json={"request_id": request_id, "items": [item]}, timeout=10
        )
    return keel_in(root, "monitor", "--window", "20", "--json", "--html", str(html))


def test_monitoring_windows_alerts_and_dashboard(server, project, tmp_path):
    root, _ = project
    done = _serve_and_monitor(server, root, tmp_path / "dash.html")
    assert done.exit_code == 1, done.output  # the cold-start rule fires
    report = json.loads(done.stdout)
    judged = [w for w in report["windows"] if w["complete"]]
    assert judged and all(0 <= w["metrics"]["coverage"] <= 1 for w in judged)
    assert any(w["metrics"]["cold_start_share"] >= 0.45 for w in judged)
    assert any(w["metrics"].get("hit_rate") == 1.0 for w in judged)
    assert report["alerts"][0]["rule"]["metric"] == "cold_start_share"
    assert "Popularity drift" in (tmp_path / "dash.html").read_text()
    page = httpx.get(f"{server}/dashboard?window=20", timeout=30)
    assert page.status_code == 200 and "hit rate" in page.text
    bad = httpx.get(f"{server}/dashboard?window=fortnight", timeout=30)
    assert bad.status_code == 422


def test_the_monitoring_page_renders_in_a_browser(server, project, tmp_path, browser):
    root, _ = project
    _serve_and_monitor(server, root, tmp_path / "dash.html")
    rendered = browser(tmp_path / "dash.html")
    assert rendered.console == [] and rendered.requests == []
    assert "<svg" in rendered.dom and rendered.screenshot.stat().st_size > 10_000


def test_the_definition_of_done_holds_for_a_served_recommender(server, project, tmp_path):
    """Its own evidence: no reliance on another test having run first (or not skipped)."""
    root, _ = project
    _serve_and_monitor(server, root, tmp_path / "dash.html")  # the dashboard gate's evidence
    loaded = keel_in(root, "loadtest", server, "--requests", "200", "--json")  # load_tested's
    assert loaded.exit_code == 0, loaded.output
    again = keel_in(root, "run", "--json")  # the re-run evidence of the idempotent gate
    assert again.exit_code == 0, again.output
    done = keel_in(root, "check", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    status = {g["gate"]: g["status"] for g in report["gates"]}
    assert report["passed"] and report["blocking"] == []
    for gate in (
        "schema",
        "tracked",
        "evaluated",
        "fairness",
        "registered",
        "load_tested",
        "drift",
        "dashboard",
        "rollback",
        "stage_io",
        "boundary_validation",
        "idempotent",
        "failure_alerts",
        "lineage",
        "end_to_end",
    ):
        assert status[gate] == "pass", (gate, report["gates"])


def test_two_workers_serve_the_same_lists(project, server):
    root, _ = project
    process, url = start_server(root, "--workers", "2")
    try:
        ready = httpx.get(f"{url}/ready", timeout=10).json()
        assert ready["model"]["alias"] == "champion"
        answers = {
            tuple(i["item_id"] for i in _post(url, {"user_id": 4, "k": 5}).json()["items"])
            for _ in range(6)
        }
        single = tuple(i["item_id"] for i in _post(server, {"user_id": 4, "k": 5}).json()["items"])
        assert answers == {single}
    finally:
        process.terminate()
        process.wait(timeout=30)
