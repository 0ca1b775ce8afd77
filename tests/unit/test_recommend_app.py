"""The recommender app in process: keys and scopes, the self-test, the log, bad input."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from keel.config import ServingConfig
from keel.families.recommendation.data import prepare_interactions
from keel.families.recommendation.monitor import monitor_recommendations, popularity_bands, shares
from keel.families.recommendation.package import LoadedRecommender
from keel.families.recommendation.serve import create_recommender_app
from keel.families.recommendation.train import fit_model
from keel.serving._log import PredictionLog
from keel.serving._observe import hash_key
from tests.unit.test_recommendation import config


@pytest.fixture(scope="module")
def loaded(movielens) -> LoadedRecommender:
    ratings, users, items = movielens
    data = prepare_interactions(ratings[ratings["user_id"] <= 80], config(), users, items)
    model = fit_model("item_knn", {"neighbours": 30}, data.frame, 0)
    bands = popularity_bands(model.recommender.popularity)
    reference = {
        "n_items": model.n_items,
        "item_band": {str(i): int(b) for i, b in zip(model.item_ids, bands, strict=True)},
        "recommended_shares": shares(bands),
        "interaction_shares": shares(bands, model.recommender.popularity),
        "user_groups": {},
    }
    meta = {"task": "recommendation", "candidate": "item_knn"}
    return LoadedRecommender(
        "ml", "4", "champion", model, meta, {"monitoring_reference.json": reference}
    )


def test_keys_are_needed_and_scoped(loaded):
    settings = ServingConfig(
        api_keys=[
            {"name": "web", "sha256": hash_key("k-predict"), "scopes": ["predict"]},
            {"name": "ops", "sha256": hash_key("k-admin"), "scopes": ["admin"]},
        ]
    )
    with TestClient(create_recommender_app(loaded, settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").json()["ready"] is True
        body = {"user_id": "1", "k": 3}
        assert client.post("/recommend", json=body).status_code == 401
        wrong = client.post("/recommend", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "nope" not in wrong.text
        ok = client.post("/recommend", json=body, headers={"Authorization": "Bearer k-predict"})
        assert ok.status_code == 200 and len(ok.json()["items"]) == 3
        assert client.get("/metrics", headers={"X-API-Key": "k-predict"}).status_code == 403
        metrics = client.get("/metrics", headers={"X-API-Key": "k-admin"})
        assert metrics.status_code == 200 and "keel_" in metrics.text
        model = client.get("/model", headers={"X-API-Key": "k-admin"}).json()
        assert model["items"] == loaded.model.n_items and model["task"] == "recommendation"


def test_without_a_log_feedback_and_dashboard_say_so(loaded):
    with TestClient(create_recommender_app(loaded)) as client:
        answer = client.post("/recommend", json={"user_id": 2, "k": 2}).json()
        feedback = client.post("/feedback", json={"request_id": answer["request_id"], "items": []})
        assert feedback.status_code == 409
        assert client.get("/dashboard").status_code == 409


def test_the_log_records_answers_and_the_dashboard_reads_them(loaded, tmp_path):
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", 0.05)
    app = create_recommender_app(loaded, log=log)
    with TestClient(app) as client:
        ids = [client.post("/recommend", json={"user_id": u, "k": 4}).json() for u in ["1", "2"]]
        sent = {"user_id": "new", "k": 4, "history": [str(loaded.model.item_ids[0])]}
        ids.append(client.post("/recommend", json=sent).json())
        ids.append(client.post("/recommend", json={"user_id": "new", "k": 4}).json())
        assert ids[3]["cold_start"] and not ids[0]["cold_start"] and not ids[2]["cold_start"]
        clicked = ids[0]["items"][0]["item_id"]
        ok = client.post("/feedback", json={"request_id": ids[0]["request_id"], "items": [clicked]})
        assert ok.status_code == 200 and ok.json()["recorded"] == 1
        page = client.get("/dashboard?window=2")
        assert page.status_code == 200 and "Popularity drift" in page.text
    rows = pd.read_sql("SELECT * FROM predictions", f"sqlite:///{tmp_path / 'log.db'}")
    assert len(rows) == 4 and set(rows["model_version"]) == {"4"}
    report = monitor_recommendations(
        read_frame(tmp_path / "log.db"),
        loaded.documents["monitoring_reference.json"],
        {"name": "ml", "version": "4"},
        window=2,
        min_rows=1,
    )
    first, second = (w.metrics for w in report.windows)
    assert first["hit_rate"] == 1.0 and "requested_popularity_psi" not in first
    assert second["requested_popularity_psi"] > 0 and second["cold_start_share"] == 0.5


def test_a_model_that_cannot_answer_is_not_ready(loaded):
    broken = LoadedRecommender("ml", "5", None, loaded.model, {})
    broken.model = type(loaded.model)(
        loaded.model.recommender,
        loaded.model.user_ids[:0],
        loaded.model.item_ids,
        loaded.model.history[:0],
    )
    with TestClient(create_recommender_app(broken)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False


def test_batch_file_checks_and_csv_output(loaded, tmp_path):
    from keel.errors import DataError, KeelInputError
    from keel.families.recommendation.batch import recommend_file

    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": ["1", "2", "3", "new"]}).to_csv(users, index=False)
    with pytest.raises(KeelInputError, match=r"write \.parquet or \.csv"):
        recommend_file(loaded, users, tmp_path / "out.txt")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(KeelInputError, match="cannot write there"):
        recommend_file(loaded, users, tmp_path / "a-file" / "out.csv")
    with pytest.raises(KeelInputError, match=r"--k must be 1\.\.1000"):
        recommend_file(loaded, users, tmp_path / "out.csv", k=0)
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"user_id": []}).to_csv(empty, index=False)
    with pytest.raises(DataError, match="no data rows"):
        recommend_file(loaded, empty, tmp_path / "none.parquet")
    assert not (tmp_path / "none.parquet").exists()
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"user_id": ["1", None]}).to_csv(blank, index=False)
    with pytest.raises(DataError, match="row 2"):
        recommend_file(loaded, blank, tmp_path / "b.csv")
    seen = []
    summary = recommend_file(
        loaded,
        users,
        tmp_path / "out.csv",
        k=3,
        chunk=2,
        progress=lambda n, total: seen.append((n, total)),
    )
    assert summary["rows"] == 12 and summary["cold_start_users"] == 1
    assert seen == [(2, 4), (4, 4)]
    written = pd.read_csv(tmp_path / "out.csv", dtype={"user_id": str, "item_id": str})
    expected = loaded.model.recommend("2", k=3)["items"]
    got = written[written["user_id"] == "2"]["item_id"].tolist()
    assert got == [i["item_id"] for i in expected]


def read_frame(path):
    from keel.serving._log import read_log

    return pd.DataFrame.from_records(read_log(f"sqlite:///{path}"))


def _route_table(app) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith(("/docs", "/openapi", "/redoc")) or "{" in path.split("/")[-1][:1]:
            continue
        for method in getattr(route, "methods", None) or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((method, path))
    return found


def _scope_of(client, method: str, path: str) -> str | None:
    """The scope a route really needs: none, predict or admin (asked with real keys)."""

    def status(key: str | None) -> int:
        headers = {"X-API-Key": key} if key else {}
        return client.request(method, path, headers=headers, json={}).status_code

    if status(None) != 401:
        return None
    return "admin" if status("k-predict") == 403 else "predict"


def test_the_runbooks_endpoint_table_is_the_apps(loaded):
    from keel.families.recommendation.report import RECOMMENDER_ENDPOINTS

    settings = ServingConfig(
        api_keys=[
            {"name": "web", "sha256": hash_key("k-predict"), "scopes": ["predict"]},
            {"name": "ops", "sha256": hash_key("k-admin"), "scopes": ["admin"]},
        ]
    )
    app = create_recommender_app(loaded, settings)
    documented = {(m, p): s for m, p, s, _ in RECOMMENDER_ENDPOINTS}
    served = {r for r in _route_table(app) if not r[1].startswith("/experiments/")}
    assert served <= set(documented), served - set(documented)
    with TestClient(app) as client:
        for (method, path), scope in documented.items():
            assert _scope_of(client, method, path) == scope, (method, path)


def _synthetic_log(loaded, n: int = 900, seed: int = 4) -> pd.DataFrame:
    """A recommender's log in log_frame's form: three days, cold users, feedback, groups."""
    import numpy as np

    rng = np.random.default_rng(seed)
    items = [str(i) for i in loaded.model.item_ids]
    start = 1_760_000_000.0
    times = start + np.sort(rng.random(n)) * 3 * 86_400  # oldest first, as a log is read
    rows = []
    for i in range(n):
        shown = list(rng.choice(items, 10, replace=False))
        clicked = list(rng.choice(shown + items[:50], 2)) if rng.random() < 0.4 else None
        history = list(rng.choice(items, 3)) if rng.random() < 0.3 else []
        rows.append(
            {
                "time": float(times[i]),
                "model_version": "4",
                "inputs": {
                    "user_id": str(rng.integers(1, 120)),
                    "k": 10,
                    "history": history,
                    "cold_start": bool(rng.random() < 0.2),
                },
                "prediction": shown,
                "score": float(rng.random()),
                "latency_ms": float(rng.gamma(2.0, 3.0)),
                "label": clicked,
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("window", ["day", "hour", 100])
def test_monitoring_in_pages_equals_the_whole_log(loaded, window):
    from keel.families.recommendation.monitor import monitor_recommendation_chunks

    log = _synthetic_log(loaded)
    reference = dict(loaded.documents["monitoring_reference.json"])
    reference["user_groups"] = {"age": {str(u): ("young" if u < 60 else "old") for u in range(120)}}
    meta = {"name": "ml", "version": "4"}
    now = float(log["time"].max()) + 3600
    whole = monitor_recommendations(log, reference, meta, window=window, min_rows=5, now=now)
    assert len(whole.windows) > 2 and any("hit_rate" in w.metrics for w in whole.windows)
    for page in (1, 7, 64, 899, 5000):
        pages = [log.iloc[i : i + page] for i in range(0, len(log), page)]
        chunked = monitor_recommendation_chunks(
            iter(pages), reference, meta, window=window, min_rows=5, now=now
        )
        assert chunked.to_dict() == whole.to_dict(), page
    empty = monitor_recommendation_chunks(iter([]), reference, meta, window=window, now=now)
    assert empty.windows == [] and empty.notes == ["no requests logged for this version yet"]
