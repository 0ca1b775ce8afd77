"""The REST app over an in-memory package: malformed, empty, huge, wrong-typed, hostile input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from keel.data import infer_schema, prepare_labels
from keel.families.tabular.training import make_pipeline
from keel.registry import LoadedPackage
from keel.serving import MAX_INSTANCES, create_app


@pytest.fixture(scope="module")
def package(adult_frame: pd.DataFrame) -> LoadedPackage:
    frame, labels = prepare_labels(adult_frame, "income", None, None)
    schema = infer_schema(frame, "income", ["fnlwgt"])
    model = make_pipeline("lightgbm", "binary", schema, 0)
    model.fit(frame[schema.feature_names], frame["income"])
    return LoadedPackage(
        name="income",
        version="7",
        alias="champion",
        model=model,
        schema=schema,
        task="binary",
        classes=labels.classes,
        metadata={},
    )


@pytest.fixture(scope="module")
def client(package: LoadedPackage) -> TestClient:
    return TestClient(create_app(package, max_body_bytes=200_000), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def rows(adult_frame: pd.DataFrame) -> list[dict]:
    records = json.loads(adult_frame.drop(columns=["income"]).head(20).to_json(orient="records"))
    return records


def test_health(client: TestClient) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json()["model"] == {
        "name": "income",
        "version": "7",
        "alias": "champion",
        "semver": None,
    }


def test_predict_matches_the_model(client: TestClient, package, rows) -> None:
    answer = client.post("/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    frame = pd.DataFrame(rows)[package.schema.feature_names]
    assert body["predictions"] == package.model.predict(frame).tolist()
    expected = package.model.predict_proba(frame)[:, 1]
    got = np.array([p[">50K"] for p in body["probabilities"]])
    assert np.allclose(got, expected, atol=1e-6)
    assert body["model"]["version"] == "7"
    assert answer.headers["X-Request-ID"] == body["request_id"]


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"instances": []}, 422, "instances: List should have at least 1 item"),
        ({}, 422, "instances: Field required"),
        ({"instances": "nope"}, 422, "instances: Input should be a valid array"),
        ({"instances": [{"age": "old"}]}, 422, "instances[0].age: expected a number"),
        ({"instances": [1]}, 422, "instances[0]: each instance must be an object"),
        ({"instances": [{}], "extra": 1}, 422, "extra: Extra inputs are not permitted"),
        ([1, 2], 422, "body: Input should be an object"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(client, payload, status, fragment) -> None:
    answer = client.post("/predict", json=payload)
    assert answer.status_code == status
    body = answer.json()
    assert fragment in body["error"], body
    assert "request_id" in body


def test_malformed_json(client: TestClient) -> None:
    answer = client.post(
        "/predict", content=b'{"instances": [', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert "not valid JSON" in answer.json()["error"]


def test_nan_and_infinity_are_rejected(client: TestClient, rows) -> None:
    text = json.dumps({"instances": [{**rows[0], "age": "__X__"}]}).replace('"__X__"', "NaN")
    answer = client.post("/predict", content=text, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert "instances[0].age: expected a finite number" in answer.json()["error"]


def test_huge_body_is_refused_before_reading(client: TestClient, rows) -> None:
    answer = client.post("/predict", json={"instances": rows * 400})
    assert answer.status_code == 413
    assert "over the limit" in answer.json()["error"]


def test_too_many_instances(package, rows) -> None:
    big = TestClient(create_app(package, max_body_bytes=10**9))
    answer = big.post("/predict", json={"instances": [rows[0]] * (MAX_INSTANCES + 1)})
    assert answer.status_code == 422
    assert "at most 10000 per request" in answer.json()["error"]


def test_hostile_field_names_are_not_echoed_in_full(client: TestClient, rows) -> None:
    hostile = "<script>" + "x" * 10_000
    answer = client.post("/predict", json={"instances": [{**rows[0], hostile: 1}]})
    assert answer.status_code == 422
    assert len(answer.text) < 2_000


def test_internal_errors_do_not_leak(package, rows, caplog) -> None:
    class Broken:
        classes_ = np.array(["<=50K", ">50K"])

        def predict(self, frame):
            raise RuntimeError("secret path /etc/model.bin")

    broken = LoadedPackage(**{**package.__dict__, "model": Broken()})
    client = TestClient(create_app(broken), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="keel.serving"):
        answer = client.post("/predict", json={"instances": rows[:1]})
    assert answer.status_code == 500
    assert "secret" not in answer.text
    assert answer.json()["error"].startswith("internal error")
    assert answer.json()["request_id"] in caplog.text


def test_bad_content_length(client: TestClient) -> None:
    answer = client.post(
        "/predict",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "x"},
    )
    assert answer.status_code == 400


def test_chunked_body_over_the_limit_is_refused(client: TestClient, rows) -> None:
    payload = json.dumps({"instances": rows * 400}).encode()

    def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    answer = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert "over the limit" in answer.json()["error"]


def test_predictions_are_the_models_own(client: TestClient, package, rows) -> None:
    """One pass through the pipeline gives exactly what predict() gives."""
    body = client.post("/predict", json={"instances": rows}).json()
    frame = pd.DataFrame(rows)[package.schema.feature_names]
    assert body["predictions"] == package.model.predict(frame).tolist()


def test_binary_decisions_use_the_packaged_threshold(package, rows) -> None:
    low = LoadedPackage(
        **{
            **package.__dict__,
            "metadata": {"positive_class": ">50K", "decision_threshold": 0.2},
        }
    )
    body = TestClient(create_app(low)).post("/predict", json={"instances": rows}).json()
    p_high = np.array([p[">50K"] for p in body["probabilities"]])
    assert body["decision_threshold"] == 0.2
    assert body["predictions"] == np.where(p_high >= 0.2, ">50K", "<=50K").tolist()
    # the threshold is not the 0.5 of predict(): some rows really change
    frame = pd.DataFrame(rows)[package.schema.feature_names]
    assert body["predictions"] != package.model.predict(frame).tolist()


def test_unknown_route_and_method_use_the_same_error_shape(client: TestClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and "request_id" in missing.json()
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.json()["error"] == "Method Not Allowed"


def test_ready_and_model_describe_the_served_model(client: TestClient, package) -> None:
    assert client.get("/ready").json()["ready"] is True
    described = client.get("/model").json()
    assert (described["name"], described["version"], described["task"]) == ("income", "7", "binary")
    names = [i["name"] for i in described["inputs"]]
    assert names == package.schema.feature_names
    assert described["card"]["command"] == "keel card income/7"


def test_metrics_parse_as_prometheus_text(package, rows) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    fresh = TestClient(create_app(package), raise_server_exceptions=False)
    assert fresh.post("/predict", json={"instances": rows[:5]}).status_code == 200
    assert fresh.post("/predict", json={"instances": [{"age": "x"}]}).status_code == 422
    fresh.get("/nope")
    text = fresh.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in families["keel_requests"].samples
        if s.name == "keel_requests_total"
    }
    assert requests[("/predict", "200")] == 1 and requests[("/predict", "422")] == 1
    assert requests[("other", "404")] == 1  # unknown paths share one label
    errors = {
        s.labels["kind"]: s.value
        for s in families["keel_errors"].samples
        if s.name == "keel_errors_total"
    }
    assert errors == {"validation": 1.0, "not_found": 1.0}
    predicted = sum(
        s.value for s in families["keel_predictions"].samples if s.name == "keel_predictions_total"
    )
    assert predicted == 5
    info = [s for s in families["keel_model_info"].samples if s.value == 1]
    assert [(s.labels["name"], s.labels["version"]) for s in info] == [("income", "7")]
    latency = [
        s
        for s in families["keel_request_seconds"].samples
        if s.name == "keel_request_seconds_count" and s.labels["endpoint"] == "/predict"
    ]
    assert latency[0].value == 2


def test_api_keys_hashed_scoped_and_health_open(package, rows, monkeypatch) -> None:
    from keel.config import ServingConfig
    from keel.serving._observe import hash_key

    settings = ServingConfig(
        api_keys=[
            {"name": "web", "sha256": hash_key("k-predict"), "scopes": ["predict"]},
            {"name": "ops", "sha256": hash_key("k-admin"), "scopes": ["admin"]},
        ]
    )
    monkeypatch.setenv(
        "KEEL_API_KEYS",
        json.dumps([{"name": "env", "sha256": hash_key("k-env"), "scopes": ["predict"]}]),
    )
    app = TestClient(create_app(package, settings=settings), raise_server_exceptions=False)
    body = {"instances": rows[:1]}
    assert app.get("/health").status_code == 200 and app.get("/ready").status_code == 200
    anonymous = app.post("/predict", json=body)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert "request_id" in anonymous.json()
    assert (
        app.post("/predict", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    for key in ("k-predict", "k-admin", "k-env"):
        ok = app.post("/predict", json=body, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200, key
    assert app.post("/predict", json=body, headers={"X-API-Key": "k-predict"}).status_code == 200
    forbidden = app.get("/metrics", headers={"X-API-Key": "k-predict"})
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["error"]
    assert app.get("/metrics", headers={"X-API-Key": "k-admin"}).status_code == 200
    # the app never holds a key in clear
    assert "k-predict" not in repr(settings.model_dump())
    monkeypatch.setenv("KEEL_API_KEYS", '[{"name": "x"}]')
    with pytest.raises(ValueError, match="KEEL_API_KEYS"):
        create_app(package)


def test_extra_fields_and_caps_follow_the_settings(package, rows) -> None:
    from keel.config import ServingConfig

    extra = {**rows[0], "colour": "blue"}
    strict = TestClient(create_app(package), raise_server_exceptions=False)
    assert strict.post("/predict", json={"instances": [extra]}).status_code == 422
    lenient = TestClient(
        create_app(package, settings=ServingConfig(extra_fields="ignore", max_instances=3)),
        raise_server_exceptions=False,
    )
    assert lenient.post("/predict", json={"instances": [extra]}).status_code == 200
    capped = lenient.post("/predict", json={"instances": rows[:4]})
    assert capped.status_code == 422 and "at most 3 per request" in capped.json()["error"]
    novel = {**rows[0], "workclass": "Astronaut"}
    assert strict.post("/predict", json={"instances": [novel]}).status_code == 200
    closed = TestClient(
        create_app(package, settings=ServingConfig(unseen_categories="reject")),
        raise_server_exceptions=False,
    )
    refused = closed.post("/predict", json={"instances": [novel]})
    assert refused.status_code == 422 and "not a known category" in refused.json()["error"]
    terse = TestClient(
        create_app(package, settings=ServingConfig(detailed_errors_for_anonymous=False)),
        raise_server_exceptions=False,
    )
    answer = terse.post("/predict", json={"instances": [{**rows[0], "age": "old"}]}).json()
    assert "detail" not in answer and "age" not in answer["error"]


def test_prediction_log_records_answers_feedback_and_redacts(package, rows, tmp_path) -> None:
    from keel.config import ServingConfig
    from keel.serving import PredictionLog, read_log

    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = PredictionLog(
        url, flush_seconds=0.05, redact={"native-country": "drop", "note": "redact"}
    )
    app = TestClient(
        create_app(package, settings=ServingConfig(extra_fields="ignore"), log=log),
        raise_server_exceptions=False,
    )
    sent = [{**r, "note": "write to ada.lovelace@example.org"} for r in rows[:3]]
    answer = app.post("/predict", json={"instances": sent}).json()
    request_id = answer["request_id"]
    done = app.post("/feedback", json={"request_id": request_id, "labels": [">50K", "<=50K", None]})
    assert done.status_code == 200, done.text
    assert done.json()["rows"] == 3
    assert app.post("/feedback", json={"request_id": "ab" * 16, "labels": [1]}).status_code == 404
    wrong = app.post("/feedback", json={"request_id": request_id, "labels": [1]})
    assert wrong.status_code == 422 and "had 3 row(s)" in wrong.json()["error"]
    assert app.post("/feedback", json={"request_id": "x' OR 1=1", "labels": [1]}).status_code == 422
    log.close()
    logged = read_log(url)
    assert [r["request_id"] for r in logged] == [request_id] * 3
    assert [r["prediction"] for r in logged] == answer["predictions"]
    assert [r["label"] for r in logged] == [">50K", "<=50K", None]
    assert all(r["model_version"] == "7" and r["latency_ms"] > 0 for r in logged)
    first = logged[0]["inputs"]
    assert "native-country" not in first and first["age"] == rows[0]["age"]
    assert "ada.lovelace" not in first["note"] and "<EMAIL_ADDRESS>" in first["note"]
    off = TestClient(create_app(package), raise_server_exceptions=False)
    assert off.post("/feedback", json={"request_id": request_id, "labels": [1]}).status_code == 409


def test_explain_answers_local_explanations_that_add_up(package, rows) -> None:
    from keel.families.tabular.responsible import explain_row

    with_background = LoadedPackage(
        **{**package.__dict__, "documents": {"background.json": rows[:15]}}
    )
    app = TestClient(
        create_app(with_background, explain_row=explain_row), raise_server_exceptions=False
    )
    answer = app.post("/explain", json={"instances": rows[:2]})
    assert answer.status_code == 200, answer.text
    found = answer.json()["explanations"]
    assert len(found) == 2
    for item in found:
        total = item["base"] + sum(c["contribution"] for c in item["contributions"])
        assert abs(total - item["total"]) < 1e-6  # every feature, so they add up
        assert len(item["contributions"]) == len(package.schema.features)
        assert item["explainer"]
    bad = app.post("/explain", json={"instances": [{"age": "x"}]})
    assert bad.status_code == 422 and "instances[0]" in bad.json()["error"]
    many = app.post("/explain", json={"instances": rows[:1] * 101})
    assert many.status_code == 422
    plain = TestClient(create_app(package), raise_server_exceptions=False)
    assert plain.post("/explain", json={"instances": rows[:1]}).status_code == 501


def test_shadow_scores_off_the_hot_path_and_canary_takes_its_share(
    package, rows, adult_frame, tmp_path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from keel.config import ServingConfig
    from keel.serving import PredictionLog, read_log

    frame, labels = prepare_labels(adult_frame, "income", None, None)
    other = LoadedPackage(
        name="income",
        version="8",
        alias="challenger",
        model=make_pipeline("shallow_tree", "binary", package.schema, 0).fit(
            frame[package.schema.feature_names], frame["income"]
        ),
        schema=package.schema,
        task="binary",
        classes=labels.classes,
        metadata={},
    )
    url = f"sqlite:///{tmp_path / 'log.db'}"
    settings = ServingConfig(shadow="challenger", canary={"alias": "challenger", "percent": 50})
    app = create_app(
        package, settings=settings, log=PredictionLog(url, 0.05), shadow=other, canary=other
    )
    answered: dict[str, str] = {}
    with TestClient(app) as client:
        for i in range(40):
            body = client.post("/predict", json={"instances": rows[i % 20 : i % 20 + 2]}).json()
            answered[body["request_id"]] = body["model"]["version"]
        text = client.get("/metrics").text
    routes = {r["request_id"]: r["route"] for r in read_log(url) if r["route"] != "shadow"}
    shadowed = {r["request_id"] for r in read_log(url) if r["route"] == "shadow"}
    by_canary = [rid for rid, version in answered.items() if version == "8"]
    assert 5 <= len(by_canary) <= 35  # ~50 %
    assert all(routes[rid] == "canary" for rid in by_canary)
    champion = {rid for rid, version in answered.items() if version == "7"}
    assert shadowed == champion  # every champion answer shadowed, canary ones not
    families = {f.name: f for f in text_string_to_metric_families(text)}
    routed = {
        s.labels["route"]: s.value
        for s in families["keel_routed"].samples
        if s.name == "keel_routed_total"
    }
    assert routed == {"champion": len(champion), "canary": len(by_canary)}
    # agreement counted for every shadowed row (the metrics page may precede the last one)
    outcomes = sum(
        s.value for s in families["keel_shadow_rows"].samples if s.name == "keel_shadow_rows_total"
    )
    assert 0 < outcomes <= 2 * len(champion)


def test_alias_watcher_follows_champion_shadow_and_canary(package, rows, monkeypatch) -> None:
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException

    import keel.families.tabular.serving.served as served_app
    from keel.families.tabular.serving.served import AliasWatcher

    packages = {v: LoadedPackage(**{**package.__dict__, "version": v}) for v in ("7", "8", "9")}
    monkeypatch.setattr(served_app, "load_package", lambda uri, _: packages[uri.split("/")[1]])
    aliases = {"champion": "7"}

    class Registry:
        def get_model_version_by_alias(self, name, alias):
            if alias not in aliases:
                raise MlflowException(f"no alias {alias}")
            return SimpleNamespace(version=aliases[alias])

    app = create_app(packages["7"])
    watcher = AliasWatcher(
        app, "income", "champion", "sqlite://", 1.0, extra={"shadow": "challenger"}
    )
    assert watcher.poll(Registry()) is False and app.state.shadow is None
    aliases["challenger"] = "8"
    assert watcher.poll(Registry()) is True and app.state.shadow.version == "8"
    aliases["champion"] = "9"
    assert watcher.poll(Registry()) is True
    assert app.state.served.version == "9" and watcher.swaps == 1
    del aliases["challenger"]  # the challenger was promoted away: no shadow any more
    assert watcher.poll(Registry()) is True and app.state.shadow is None
    del aliases["champion"]  # the champion never disappears from under the server
    assert watcher.poll(Registry()) is False and app.state.served.version == "9"
    # a version that cannot answer is not swapped in
    broken = LoadedPackage(
        **{
            **package.__dict__,
            "version": "10",
            "model": None,
            "documents": {"background.json": rows[:2]},
        }
    )
    packages["10"] = broken
    aliases["champion"] = "10"
    assert watcher.poll(Registry()) is False and app.state.served.version == "9"


def test_openapi_documents_routes_errors_and_examples_from_the_package(package, rows) -> None:
    documented = LoadedPackage(**{**package.__dict__, "documents": {"background.json": rows[:5]}})
    spec = TestClient(create_app(documented)).get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]
    assert body["example"] == {"instances": rows[:2]} and "schema" in body
    assert {"401", "413", "422", "500"} <= set(predict["responses"])
    assert "ErrorBody" in spec["components"]["schemas"]
    for path in ("/explain", "/feedback", "/model", "/metrics", "/v2/models/{name}/infer"):
        assert path in spec["paths"], path


def test_grafana_dashboard_queries_only_metrics_the_server_exposes() -> None:
    import re

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from keel.cli._build import grafana_dashboard
    from keel.serving._observe import Metrics

    metrics = Metrics()
    metrics.serving({"name": "income", "version": "1", "alias": "champion"})
    metrics.requests.labels("/predict", "200", "1").inc()
    metrics.latency.labels("/predict").observe(0.001)
    metrics.errors.labels("validation").inc()
    metrics.answered("1", [">50K"], [0.7])
    metrics.routed.labels("champion").inc()
    metrics.shadow_rows.labels("agree").inc()
    metrics.swaps.inc()
    text = generate_latest(metrics.registry).decode()
    exposed = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    dashboard = grafana_dashboard("income", "champion")
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = set(re.findall(r"\b(keel_[a-z_]+)", queries))
    assert len(used) >= 8 and used <= exposed, used - exposed
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])


def test_regression_predictions_do_not_become_metric_labels() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from keel.serving._observe import Metrics

    metrics = Metrics()
    metrics.answered("1", [1.5, 2.25, 3.125], [1.5, 2.25, 3.125], classification=False)
    metrics.answered("1", [">50K", "<=50K", ">50K"], [0.7, 0.2, 0.9])
    samples = [
        s
        for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in f.samples
    ]
    classes = {s.labels["prediction"] for s in samples if s.name == "keel_predictions_total"}
    assert classes == {">50K", "<=50K"}  # no series per predicted number
    rows = [s.value for s in samples if s.name == "keel_rows_total"]
    assert rows == [6.0]


def test_request_ids_grow_with_time_and_keep_a_random_end() -> None:
    import re
    import time

    from keel.serving._http import canary_share, new_request_id

    first = new_request_id()
    time.sleep(0.003)
    second = new_request_id()
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first < second  # later ms sorts later
    shares = [canary_share(new_request_id()) for _ in range(20_000)]
    assert 0.04 < sum(s < 5 for s in shares) / len(shares) < 0.06  # canary 5 %: uniform


def test_ready_is_false_until_the_model_answers_its_own_rows(package, rows) -> None:
    import dataclasses

    package = dataclasses.replace(package, documents={"background.json": rows})
    app = create_app(package)
    served = app.state.served
    assert served.readiness is None  # nothing tested yet

    def broken(rows, *args, **kwargs):
        raise ValueError("the model lost a column")

    served.answer = broken
    client = TestClient(app, raise_server_exceptions=False)
    answer = client.get("/ready")
    assert answer.status_code == 503 and answer.json()["ready"] is False
    assert "failed its own example rows (ValueError)" in answer.json()["self_test"]
    assert "lost a column" not in answer.text  # no internals
    healthy = TestClient(create_app(package))
    found = healthy.get("/ready").json()
    assert found["ready"] is True and found["self_test"] == "answered its 20 example row(s)"


def test_the_runbooks_endpoint_table_is_the_apps(package) -> None:
    from keel.config import ServingConfig
    from keel.reports._governance import TABULAR_ENDPOINTS
    from keel.serving import hash_key
    from tests.unit.test_recommend_app import _route_table, _scope_of

    settings = ServingConfig(
        api_keys=[
            {"name": "web", "sha256": hash_key("k-predict"), "scopes": ["predict"]},
            {"name": "ops", "sha256": hash_key("k-admin"), "scopes": ["admin"]},
        ]
    )
    app = create_app(package, settings=settings)
    documented = {(m, p): s for m, p, s, _ in TABULAR_ENDPOINTS}
    served = {r for r in _route_table(app) if not r[1].startswith(("/experiments/", "/v2"))}
    assert served <= set(documented), served - set(documented)
    with TestClient(app) as client:
        for (method, path), scope in documented.items():
            if "{" not in path:
                assert _scope_of(client, method, path) == scope, (method, path)
