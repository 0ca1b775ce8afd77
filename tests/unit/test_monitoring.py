"""Monitoring: the package's drift reference, windows over a log, alerts and their sinks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference
from pydantic import ValidationError
from scipy.stats import chi2_contingency, ks_2samp

from keel.config import AlertRule, AlertSink, MonitoringConfig
from keel.monitoring import (
    CategoricalReference,
    DriftReference,
    NumericReference,
    categorical_drift,
    column_drift,
    cut_windows,
    deliver,
    drift_report,
    evaluate,
    load_state,
    monitor,
    post_json,
    render_dashboard,
    save_state,
    shown_url,
)
from keel.monitoring._drift import _pooled
from tests.conftest import WebhookReceiver, free_port
from tests.floats import same_float, same_p_value

# --- the reference ----------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(300, 200), (20_000, 15_000)])
def test_package_reference_gives_scipys_ks_p_values(sizes: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    ref = pd.Series(rng.integers(17, 90, sizes[0]).astype(float))  # ties, like ages
    cur = pd.Series(rng.integers(19, 92, sizes[1]).astype(float))
    reference = NumericReference.from_values(ref)
    assert reference.exact and len(reference.values) < 100
    found = column_drift("age", reference, cur)
    expected = ks_2samp(ref, cur)
    assert same_p_value(found.p_value, expected.pvalue)
    assert same_float(found.statistic, expected.statistic)
    assert not found.approximate


def test_references_merge_like_the_whole(adult_frame: pd.DataFrame) -> None:
    frame = adult_frame.drop(columns=["income"])
    parts = [DriftReference.from_frame(frame.iloc[i : i + 700]) for i in range(0, len(frame), 700)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    whole = DriftReference.from_frame(frame)
    assert merged.rows == whole.rows == len(frame)
    for name, ref in whole.columns.items():
        other = merged.columns[name]
        if isinstance(ref, NumericReference):
            assert np.array_equal(ref.values, other.values)
            assert np.array_equal(ref.counts, other.counts) and ref.missing == other.missing
        else:
            assert ref.counts == other.counts
    again = DriftReference.from_dict(json.loads(json.dumps(whole.to_dict())))
    assert again.to_dict() == whole.to_dict()


def test_too_many_distinct_values_are_sketched_and_say_so() -> None:
    rng = np.random.default_rng(1)
    values = pd.Series(rng.normal(size=50_000))
    sketch = NumericReference.from_values(values, max_distinct=2_000)
    assert not sketch.exact and len(sketch.values) <= 2_000 and sketch.rows == 50_000
    cur = pd.Series(rng.normal(0.05, 1, 5_000))
    approximate = column_drift("x", sketch, cur)
    exact = ks_2samp(values, cur)
    assert approximate.approximate
    assert abs(approximate.statistic - exact.statistic) < 2e-3  # ranks kept to 1/2000


def test_categories_past_the_cap_are_pooled_as_other() -> None:
    series = pd.Series([f"c{i}" for i in range(50)] * 3 + ["c0"] * 10)
    ref = CategoricalReference.from_values(series, max_categories=10)
    assert len(ref.counts) == 10 and ref.rows == len(series) and "(other)" in ref.counts
    assert ref.counts["c0"] == 13


def test_reference_rejects_what_is_not_one() -> None:
    with pytest.raises(ValueError, match="not a drift reference"):
        DriftReference.from_dict({"columns": {"x": {"kind": "numeric"}}})


# --- chi-square with sparse categories ----------------------------------------------


def test_sparse_categories_are_pooled_before_the_chi_square() -> None:
    table = np.array([[3000.0, 500.0, 2.0, 0.0], [280.0, 40.0, 0.0, 1.0]])
    pooled = _pooled(table)
    # c and new are sparse; pooled they still are, so the smallest other (b) joins them
    assert pooled.tolist() == [[3000.0, 502.0], [280.0, 41.0]]
    ref = pd.Series(["a"] * 3000 + ["b"] * 500 + ["c"] * 2)
    cur = pd.Series(["a"] * 280 + ["b"] * 40 + ["new"])
    found = categorical_drift("x", ref, cur)
    assert found.p_value == pytest.approx(chi2_contingency(pooled, correction=False).pvalue)
    assert found.unseen_categories == {"new": 1}
    # one unseen row among 321 is not drift; without pooling p would be ~0.008
    assert found.p_value > 0.05
    assert chi2_contingency(table, correction=False).pvalue < 0.01


def test_an_unseen_category_in_bulk_is_drift() -> None:
    ref = pd.Series(["a"] * 500 + ["b"] * 500)
    cur = pd.Series(["a"] * 200 + ["b"] * 200 + ["new"] * 60)
    assert categorical_drift("x", ref, cur).p_value < 1e-6


# --- windows --------------------------------------------------------------------------


def test_windows_of_rows_and_of_hours() -> None:
    times = np.arange(10, dtype=float)
    assert cut_windows(times, 4, now=100) == [(0, 4, True), (4, 8, True), (8, 10, False)]
    hours = np.array([0, 10, 3599, 3600, 7300, 7400], dtype=float)
    assert cut_windows(hours, "hour", now=7500) == [(0, 3, True), (3, 4, True), (4, 6, False)]
    assert cut_windows(np.array([]), "day", now=0) == []


def _log(
    frame: pd.DataFrame, predictions: list[str], labels: list[str], start: float
) -> pd.DataFrame:
    rows = json.loads(frame.to_json(orient="records"))
    return pd.DataFrame(
        {
            "time": start + np.arange(len(rows)),
            "model_version": "1",
            "inputs": rows,
            "prediction": predictions,
            "score": np.linspace(0.1, 0.9, len(rows)),
            "latency_ms": 1.0,
            "label": labels,
        }
    )


@pytest.fixture(scope="module")
def watched(adult_frame: pd.DataFrame) -> dict:
    features = adult_frame.drop(columns=["income", "fnlwgt"])
    reference = DriftReference.from_frame(features.iloc[:1000])
    outputs = DriftReference.from_frame(
        pd.DataFrame({"prediction": adult_frame["income"].iloc[:1000].astype(str)})
    )
    calm = features.iloc[1000:1600]
    shifted = features.iloc[1600:2000].assign(age=lambda f: f.age + 12)
    current = pd.concat([calm, shifted])
    truth = adult_frame["income"].iloc[1000:2000].astype(str).tolist()
    # a model right 80 % of the time: every fifth answer wrong
    flip = {"<=50K": ">50K", ">50K": "<=50K"}
    predicted = [flip[t] if i % 5 == 0 else t for i, t in enumerate(truth)]
    log = _log(current, predicted, truth, start=1_000.0)
    meta = {
        "name": "income",
        "version": "1",
        "task": "binary",
        "positive_class": ">50K",
        "sensitive_features": ["sex"],
    }
    report = monitor(log, reference, outputs, meta, window=200, min_rows=50, now=10_000)
    return {
        "report": report,
        "log": log,
        "truth": truth,
        "predicted": predicted,
        "inputs": (reference, outputs, meta),
    }


def test_drift_is_found_in_the_windows_it_was_injected_in_only(watched: dict) -> None:
    report = watched["report"]
    assert [w.rows for w in report.windows] == [200] * 5
    drifted = [w.drift["drifted_columns"] for w in report.windows]
    assert drifted[:3] == [[], [], []]
    assert all("age" in d for d in drifted[3:])
    assert "age" in report.skew["drifted_columns"]


def test_window_performance_and_fairness_match_sklearn_and_fairlearn(watched: dict) -> None:
    window = watched["report"].windows[1]
    truth = watched["truth"][200:400]
    predicted = watched["predicted"][200:400]
    assert window.metrics["accuracy"] == pytest.approx(
        np.mean(np.array(truth) == np.array(predicted))
    )
    sex = [row["sex"] for row in watched["log"]["inputs"].iloc[200:400]]
    expected = demographic_parity_difference(
        np.array(truth) == ">50K", np.array(predicted) == ">50K", sensitive_features=sex
    )
    assert window.metrics["demographic_parity_difference"] == pytest.approx(expected)
    assert set(window.fairness["sex"]) == {"Female", "Male"}


@pytest.mark.parametrize(("window", "size"), [(200, 77), (150, 1000), ("hour", 33)])
def test_a_log_read_in_chunks_gives_the_same_report(watched: dict, window, size) -> None:
    from keel.monitoring import monitor_chunks

    log = watched["log"]
    reference, outputs, meta = watched["inputs"]
    whole = monitor(log, reference, outputs, meta, window=window, min_rows=50, now=10_000)
    parts = (log.iloc[i : i + size] for i in range(0, len(log), size))
    chunked = monitor_chunks(
        parts, reference, outputs, meta, window=window, min_rows=50, now=10_000
    )
    a, b = whole.to_dict(), chunked.to_dict()
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_dashboard_shows_every_section(watched: dict) -> None:
    page = render_dashboard(watched["report"].to_dict())
    for part in (
        "Drift over time",
        "Prediction distribution",
        "Latency",
        "Performance",
        "Fairness",
    ):
        assert part in page
    assert page.count("<svg") >= 5 and "http" not in page.replace("http-equiv", "")


# --- alerts ---------------------------------------------------------------------------


def _report(values: list[float | None], complete: bool = True):
    from keel.monitoring import MonitorReport, Window

    windows = [
        Window(i, 5.0, 5.0, 100, complete, v is not None, {"drift_share": v or 0.0}, mark=float(i))
        for i, v in enumerate(values)
    ]
    return MonitorReport({"name": "m", "version": "3"}, 100, 100 * len(values), windows, {})


def test_one_incident_is_one_alert() -> None:
    rule = AlertRule(metric="drift_share", threshold=0.3, severity="critical")
    state: dict = {}
    alerts = evaluate([rule], {"100": _report([0.1, 0.5, 0.6, 0.1, 0.4])}, state, 100)
    assert [a["window"]["index"] for a in alerts] == [1, 4]  # two incidents
    assert alerts[0]["model"] == {"name": "m", "version": "3"} and alerts[0]["value"] == 0.5
    again = evaluate([rule], {"100": _report([0.1, 0.5, 0.6, 0.1, 0.4, 0.7])}, state, 100)
    assert again == []  # windows 0-4 judged already; 5 continues the open incident


def test_windows_still_open_or_too_small_are_not_judged() -> None:
    rule = AlertRule(metric="drift_share", threshold=0.3)
    assert evaluate([rule], {"100": _report([0.9], complete=False)}, {}, 100) == []
    assert evaluate([rule], {"100": _report([None])}, {}, 100) == []


def test_lower_is_worse_for_accuracy() -> None:
    assert AlertRule(metric="accuracy", threshold=0.8).direction == "below"
    assert AlertRule(metric="max_psi", threshold=0.2).direction == "above"
    with pytest.raises(ValidationError):
        AlertRule(metric="drift_share", window="week")
    with pytest.raises(ValidationError, match="webhook"):
        AlertSink(type="webhook", url="ftp://x")
    assert MonitoringConfig.model_validate({"window": "250"}).window == 250


def test_webhook_retries_then_delivers_once(tmp_path: Path) -> None:
    receiver = WebhookReceiver(failures=2)
    try:
        alert = {"id": "a1", "severity": "critical", "message": "m"}
        sinks = [
            AlertSink(type="webhook", url=receiver.url, retries=3, timeout_seconds=2),
            AlertSink(type="jsonl", path="alerts.jsonl"),
        ]
        records = deliver([alert], sinks, tmp_path)
        assert receiver.attempts == 3 and receiver.received == [alert]
        assert [r["error"] for r in records] == [None, None]
        assert "SECRET" not in records[0]["to"]
        assert json.loads((tmp_path / "alerts.jsonl").read_text()) == alert
    finally:
        receiver.close()


def test_webhook_that_refuses_is_not_retried_and_never_raises() -> None:
    receiver = WebhookReceiver(failures=5, status=400)
    try:
        assert post_json(receiver.url, {"x": 1}, timeout=2, retries=3) == "HTTP 400"
        assert receiver.attempts == 1
    finally:
        receiver.close()
    started = time.monotonic()
    problem = post_json(f"http://127.0.0.1:{free_port()}/", {"x": 1}, timeout=1, retries=1)
    assert problem is not None and "Connection refused" in problem
    assert time.monotonic() - started < 10


def test_shown_url_hides_tokens_and_passwords() -> None:
    assert shown_url("https://user:pw@hooks.example.com:8443/services/T0/B1/XYZ?k=1") == (
        "https://hooks.example.com:8443/…"
    )


def test_alert_state_survives_a_round_trip_and_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "log.db.alerts.json"
    save_state(path, {"incidents": {"k": {"windows": 1}}})
    assert load_state(path)["incidents"] == {"k": {"windows": 1}}
    path.write_text("{not json")
    assert load_state(path) == {"format": 1}


def test_drift_report_takes_a_reference_in_place_of_a_table(adult_frame: pd.DataFrame) -> None:
    frame = adult_frame.drop(columns=["income"])
    reference = DriftReference.from_frame(frame.iloc[:1000])
    from_table = drift_report(frame.iloc[:1000], frame.iloc[1000:]).to_dict()
    from_reference = drift_report(reference, frame.iloc[1000:]).to_dict()
    assert [c["p_value"] for c in from_table["columns"]] == [
        c["p_value"] for c in from_reference["columns"]
    ]


# --- chunks -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunked_reference_gives_the_whole_tables_report(
    tmp_path: Path, adult_frame: pd.DataFrame, suffix: str
) -> None:
    from keel.monitoring import reference_of_file

    frame = adult_frame.drop(columns=["income"])
    reference, current = frame.iloc[:1200], frame.iloc[1200:].assign(age=lambda f: f.age + 3)
    paths = [tmp_path / f"ref{suffix}", tmp_path / f"cur{suffix}"]
    for table, path in zip((reference, current), paths, strict=True):
        table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    seen: list[int] = []
    ref = reference_of_file(paths[0], 250, progress=seen.append)
    assert seen == [250, 250, 250, 250, 200] and ref.rows == 1200
    kinds = {
        n: "numeric" if isinstance(c, NumericReference) else "categorical"
        for n, c in ref.columns.items()
    }
    cur = reference_of_file(paths[1], 300, kinds=kinds)
    chunked = drift_report(ref, cur).to_dict()
    whole = drift_report(reference, current).to_dict()
    assert chunked["drifted_columns"] == whole["drifted_columns"]
    assert "age" in chunked["drifted_columns"]
    for a, b in zip(chunked["columns"], whole["columns"], strict=True):
        assert a["column"] == b["column"] and not a["approximate"]
        assert a["p_value"] == pytest.approx(b["p_value"], rel=1e-9, abs=1e-300)


def test_chunked_reading_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    from keel.monitoring import reference_of_file

    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.csv and \.parquet"):
        reference_of_file(tmp_path / "data.json", 100)
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="no rows"):
        reference_of_file(tmp_path / "empty.csv", 100)
    (tmp_path / "one.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no column 'z'"):
        reference_of_file(tmp_path / "one.csv", 100, kinds={"z": "numeric"})
