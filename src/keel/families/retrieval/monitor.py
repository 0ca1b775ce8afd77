"""Monitoring a served retrieval model, window by window, from the prediction log.

Per window: questions, **query drift** (the distance of the window's question centroid
from the labelled questions' centroid, over the 95th percentile of a labelled
question's distance: above 1, the questions moved), the **out-of-corpus share** (the
questions whose nearest chunk is less similar than 95 % of the labelled questions'
nearest chunks), the **no-answer rate** and the **block rate** (guardrails), the cache
hit rate, the share of answers marked helpful in ``/feedback`` and latency. The logged
questions are the redacted ones (``query_pii``); they are embedded again with the
package's own model. Metrics are keyed like alert rules (``monitoring.alerts``).
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from keel.monitoring._dashboard import CSS, line_chart
from keel.monitoring._monitor import MonitorReport, Window, empty_windows

METRICS = (
    "query_drift",
    "out_of_corpus_share",
    "no_answer_rate",
    "block_rate",
    "cache_hit_rate",
    "helpful_rate",
    "latency_p95_ms",
)


def monitor_questions(
    log: pd.DataFrame,
    reference: dict[str, Any],
    meta: dict[str, Any],
    *,
    window: str | int = "day",
    min_rows: int = 30,
    now: float | None = None,
) -> MonitorReport:
    """Windows of one retrieval version's log against its package's reference."""
    now = time.time() if now is None else now
    model = {"name": meta.get("name"), "version": meta.get("version"), "task": "retrieval"}
    log = log.sort_values("time", kind="stable").reset_index(drop=True) if len(log) else log
    windows = []
    for found, rows in empty_windows(log, window, min_rows, now):
        _fill(found, log.iloc[rows], reference)
        windows.append(found)
    notes = [] if len(log) else ["no questions logged for this version yet"]
    return MonitorReport(model, window, len(log), windows, {}, notes=notes)


def _fill(window: Window, part: pd.DataFrame, reference: dict[str, Any]) -> None:
    from keel.families.retrieval.retrievers import embed

    inputs = [r if isinstance(r, dict) else {} for r in part["inputs"]]
    blocked = np.array([bool(r.get("blocked")) for r in inputs], dtype=float)
    answered = [r for r in inputs if not r.get("blocked")]
    no_answer = np.array([bool(r.get("no_answer")) for r in answered], dtype=float)
    cache = [r.get("cache") for r in answered if r.get("cache") in ("exact", "near", "miss")]
    latency = part["latency_ms"].to_numpy(float)
    metrics: dict[str, float] = {
        "questions": float(len(part)),
        "block_rate": float(blocked.mean()) if len(blocked) else math.nan,
        "no_answer_rate": float(no_answer.mean()) if len(no_answer) else math.nan,
        "cache_hit_rate": float(np.mean([c != "miss" for c in cache])) if cache else math.nan,
        "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else math.nan,
        "latency_p95_ms": float(np.percentile(latency, 95)) if len(latency) else math.nan,
    }
    queries = [str(r.get("query") or "") for r in answered if r.get("query")]
    if queries:
        vectors = embed(queries)
        centroid = np.asarray(reference["centroid"], dtype=np.float32)
        spread = max(float(reference["centroid_distance_p95"]), 1e-6)
        metrics["query_drift"] = float(np.linalg.norm(vectors.mean(axis=0) - centroid) / spread)
        similarity = np.array(
            [r.get("best_similarity") for r in answered if r.get("query")], dtype=float
        )
        known = similarity[np.isfinite(similarity)]
        if len(known):
            metrics["out_of_corpus_share"] = float(
                np.mean(known < float(reference["out_of_corpus_similarity"]))
            )
    labels = [lab for lab in part["label"] if isinstance(lab, dict)]
    helpful = [bool(lab["helpful"]) for lab in labels if lab.get("helpful") is not None]
    if helpful:
        metrics["helpful_rate"] = float(np.mean(helpful))
    window.metrics = metrics
    window.performance = {
        "feedback": len(labels),
        "helpful": int(sum(helpful)),
        "documents_named": sum(1 for lab in labels if lab.get("document")),
    }


def render_retrieval_dashboard(report: MonitorReport | dict[str, Any]) -> str:
    """The dashboard page of a retrieval model's monitor report."""
    doc = report.to_dict() if isinstance(report, MonitorReport) else report
    model, windows = doc["model"], doc["windows"]
    title = f"Keel monitoring — {model.get('name')} v{model.get('version')} (retrieval)"

    def series(metric: str) -> list[float | None]:
        values = [w["metrics"].get(metric) for w in windows]
        return [
            None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values
        ]

    def n(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return f"{value:.3f}"

    e = html.escape
    rows = "".join(
        f"<tr><td>{w['index']}</td><td>{e(w['label'])}</td><td>{w['rows']}</td>"
        + "".join(f"<td>{n(w['metrics'].get(m))}</td>" for m in METRICS)
        + "</tr>"
        for w in reversed(windows[-50:])
    )
    alerts = doc.get("alerts", [])
    alert_rows = "".join(
        f"<tr><td>{e(a['severity'])}</td><td>{e(a['window']['label'])}</td>"
        f"<td>{e(a['rule']['metric'])}</td><td>{n(a['value'])}</td><td>{e(a['message'])}</td></tr>"
        for a in reversed(alerts)
    )
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{e(title)}</h1>",
            f"<p>{doc['rows']} logged questions in {len(windows)} windows of"
            f" {e(str(doc['window']))}.</p>",
            "<h2>Alerts</h2>",
            "<table><tr><th>severity</th><th>window</th><th>metric</th><th>value</th>"
            f"<th>message</th></tr>{alert_rows}</table>"
            if alert_rows
            else "<p class='ok'>none</p>",
            "<div class='grid'>",
            "<div class='panel'><h2>Query drift</h2>",
            line_chart(
                {
                    "centroid distance / labelled p95": series("query_drift"),
                    "out-of-corpus share": series("out_of_corpus_share"),
                },
                "query drift",
            ),
            "</div><div class='panel'><h2>Answers</h2>",
            line_chart(
                {
                    "no-answer rate": series("no_answer_rate"),
                    "block rate": series("block_rate"),
                    "cache hit rate": series("cache_hit_rate"),
                },
                "answers",
                top=1.0,
            ),
            "</div><div class='panel'><h2>Feedback</h2>",
            line_chart({"helpful": series("helpful_rate")}, "feedback", top=1.0)
            if any(v is not None for v in series("helpful_rate"))
            else "<p>no feedback yet (POST /feedback with helpful: true/false)</p>",
            "</div><div class='panel'><h2>Latency (ms)</h2>",
            line_chart(
                {"p50": series("latency_p50_ms"), "p95": series("latency_p95_ms")}, "latency"
            ),
            "</div></div>",
            "<h2>Windows</h2>",
            "<table><tr><th>#</th><th>window</th><th>questions</th>"
            + "".join(f"<th>{e(m.replace('_', ' '))}</th>" for m in METRICS)
            + f"</tr>{rows}</table>",
            "</body></html>",
        ]
    )


MONITOR_HEADS = ("#", "from (UTC)", "questions", "blocked", "no answer", "query drift")
MONITOR_HEADS += ("out of corpus", "helpful", "p95 ms")


def monitor_row(w: dict[str, Any], num: Any) -> list[str]:
    """One window's cells after ``#``, start and questions (``keel monitor`` table)."""
    m = w["metrics"]
    keys = ("block_rate", "no_answer_rate", "query_drift", "out_of_corpus_share", "helpful_rate")
    return [*(num(m.get(k)) for k in keys), num(m.get("latency_p95_ms"))]
