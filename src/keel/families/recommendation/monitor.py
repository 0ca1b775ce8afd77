"""Monitoring a served recommender, window by window, from the prediction log.

Per window: requests, the share of cold-start requests, catalogue coverage (distinct
items recommended / catalogue), popularity drift (PSI over ten popularity bands of the
catalogue) of what is recommended (against the test-period lists), of the histories
requests brought and of what users consumed (against the training interactions), hit
rate and click-through from ``/feedback`` (a request hit when a consumed item was in
its list), hit rate per user group (the package's banded sensitive features, and cold
vs warm) and latency. The metrics are keyed like alert rules (``monitoring.alerts``),
so the same rules, incident state and sinks apply as for tabular models.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from keel.monitoring._dashboard import CSS, line_chart
from keel.monitoring._drift import _psi
from keel.monitoring._monitor import SECONDS, MonitorReport, Window, empty_windows

BANDS = 10
MIN_GROUP_REQUESTS = 20


def popularity_bands(popularity: np.ndarray) -> np.ndarray:
    """Band 0 (most popular tenth of the catalogue) … 9 (the least popular) per item."""
    order = np.argsort(-np.asarray(popularity, dtype=float), kind="stable")
    bands = np.empty(len(order), dtype=np.int64)
    bands[order] = np.minimum(np.arange(len(order)) * BANDS // max(1, len(order)), BANDS - 1)
    return bands


def shares(bands: np.ndarray, weights: np.ndarray | None = None) -> list[float]:
    """Share of each popularity band (weights: counts per entry)."""
    counts = np.bincount(bands, weights=weights, minlength=BANDS).astype(float)
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]


def psi(current: list[float], reference: list[float]) -> float:
    """Population stability index of two band distributions (drift's own PSI)."""
    return _psi(np.asarray(reference, dtype=float), np.asarray(current, dtype=float))


def monitor_recommendations(
    log: pd.DataFrame,
    reference: dict[str, Any],
    meta: dict[str, Any],
    *,
    window: str | int = "day",
    min_rows: int = 30,
    now: float | None = None,
) -> MonitorReport:
    """Windows of one recommender version's log against its package's reference."""
    now = time.time() if now is None else now
    model = {"name": meta.get("name"), "version": meta.get("version"), "task": "recommendation"}
    band_of = {str(k): int(v) for k, v in reference["item_band"].items()}
    groups = reference.get("user_groups", {})
    windows = []
    for found, rows in empty_windows(log, window, min_rows, now):
        _fill(found, log.iloc[rows], reference, band_of, groups)
        windows.append(found)
    notes = [] if len(log) else ["no requests logged for this version yet"]
    return MonitorReport(model, window, len(log), windows, {}, notes=notes)


def monitor_recommendation_chunks(
    chunks: Iterable[pd.DataFrame],
    reference: dict[str, Any],
    meta: dict[str, Any],
    *,
    window: str | int = "day",
    min_rows: int = 30,
    now: float | None = None,
) -> MonitorReport:
    """:func:`monitor_recommendations` over a log read in pages (oldest first).

    Only the rows of the window being read are held: a window is judged as soon as the
    next one begins, so memory follows the largest window, not the log. The numbers
    are those of the whole-log computation (tested equal at every page size).
    """
    now = time.time() if now is None else now
    model = {"name": meta.get("name"), "version": meta.get("version"), "task": "recommendation"}
    band_of = {str(k): int(v) for k, v in reference["item_band"].items()}
    groups = reference.get("user_groups", {})
    windows: list[Window] = []
    pending: list[pd.DataFrame] = []
    current: int | None = None
    total = 0

    def close(key: int) -> None:
        part = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
        times = part["time"].to_numpy(float)
        if isinstance(window, int):
            complete, mark = len(part) >= window, float(len(windows))
        else:
            width = SECONDS[window]
            complete, mark = (key + 1) * width <= now, float(times[0] // width * width)
        found = Window(
            index=len(windows),
            start=float(times[0]),
            end=float(times[-1]),
            rows=len(part),
            complete=bool(complete),
            judged=len(part) >= min_rows,
            mark=mark,
        )
        _fill(found, part.reset_index(drop=True), reference, band_of, groups)
        windows.append(found)
        pending.clear()

    for chunk in chunks:
        if not len(chunk):
            continue
        chunk = chunk.sort_values("time", kind="stable").reset_index(drop=True)
        times = chunk["time"].to_numpy(float)
        if isinstance(window, int):
            keys = np.arange(total, total + len(chunk)) // window
        else:
            keys = np.floor(times / SECONDS[window]).astype(np.int64)
        edges = np.flatnonzero(np.diff(keys)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(chunk)], strict=True):
            key = int(keys[a])
            if current is not None and key != current:
                close(current)
            current = key
            pending.append(chunk.iloc[a:b])
        total += len(chunk)
    if pending and current is not None:
        close(current)
    notes = [] if total else ["no requests logged for this version yet"]
    return MonitorReport(model, window, total, windows, {}, notes=notes)


def _fill(
    window: Window,
    part: pd.DataFrame,
    reference: dict[str, Any],
    band_of: dict[str, int],
    groups: dict[str, dict[str, str]],
) -> None:
    inputs = list(part["inputs"])
    lists = [list(p) if isinstance(p, list) else [] for p in part["prediction"]]
    shown = [str(i) for items in lists for i in items]
    cold = np.array([bool(r.get("cold_start")) for r in inputs], dtype=float)
    latency = part["latency_ms"].to_numpy(float)
    metrics: dict[str, float] = {
        "requests": float(len(part)),
        "cold_start_share": float(cold.mean()) if len(cold) else math.nan,
        "coverage": len(set(shown)) / max(1, int(reference["n_items"])),
        "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else math.nan,
        "latency_p95_ms": float(np.percentile(latency, 95)) if len(latency) else math.nan,
    }
    recommended = shares(np.array([band_of[i] for i in shown if i in band_of], dtype=np.int64))
    metrics["popularity_psi"] = (
        psi(recommended, reference["recommended_shares"]) if shown else math.nan
    )
    requested = [str(i) for r in inputs for i in (r.get("history") or [])]
    if requested:
        bands = np.array([band_of[i] for i in requested if i in band_of], dtype=np.int64)
        metrics["requested_popularity_psi"] = psi(shares(bands), reference["interaction_shares"])
    labelled = [
        (r, items, lab)
        for r, items, lab in zip(inputs, lists, part["label"], strict=True)
        if isinstance(lab, list)
    ]
    consumed = [str(i) for _, _, lab in labelled for i in lab]
    if consumed:
        bands = np.array([band_of[i] for i in consumed if i in band_of], dtype=np.int64)
        metrics["consumed_popularity_psi"] = psi(shares(bands), reference["interaction_shares"])
    performance: dict[str, Any] = {"labelled_requests": len(labelled)}
    fairness: dict[str, Any] = {}
    if labelled:
        hits = np.array(
            [bool(set(map(str, lab)) & set(map(str, items))) for _, items, lab in labelled],
            dtype=float,
        )
        clicked = sum(len(set(map(str, lab)) & set(map(str, items))) for _, items, lab in labelled)
        metrics["hit_rate"] = float(hits.mean())
        metrics["ctr"] = clicked / max(1, sum(len(items) for _, items, _ in labelled))
        performance |= {"hit_rate": metrics["hit_rate"], "ctr": metrics["ctr"]}
        users = [str(r.get("user_id")) for r, _, _ in labelled]
        features = {**groups, "history": {}}
        gaps = []
        for feature, mapping in features.items():
            if feature == "history":
                labels = ["cold start" if r.get("cold_start") else "warm" for r, _, _ in labelled]
            else:
                labels = [mapping.get(u, "(unknown user)") for u in users]
            table = pd.DataFrame({"group": labels, "hit": hits}).groupby("group")["hit"]
            rates = table.mean()
            sizes = table.size()
            fairness[feature] = {
                g: {"requests": int(sizes[g]), "hit_rate": float(rates[g])} for g in rates.index
            }
            judged = rates[sizes >= MIN_GROUP_REQUESTS]
            if len(judged) >= 2:
                gaps.append(float(judged.max() - judged.min()))
        if gaps:
            metrics["hit_rate_difference"] = max(gaps)
    window.metrics = metrics
    window.performance = performance
    window.fairness = fairness
    window.prediction_share = {f"band {b + 1}": s for b, s in enumerate(recommended)}


def _esc(value: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(value))


def _num3(value: Any) -> str:
    """A number to three decimals, or a dash when there is none."""
    return (
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
    )


def _window_rows(windows: list[dict[str, Any]]) -> str:
    """One table row per window, newest first (the last 50)."""
    return "".join(
        f"<tr><td>{w['index']}</td><td>{_esc(w['label'])}</td><td>{w['rows']}</td>"
        + "".join(
            f"<td>{_num3(w['metrics'].get(m))}</td>"
            for m in (
                "cold_start_share",
                "coverage",
                "popularity_psi",
                "hit_rate",
                "ctr",
                "hit_rate_difference",
                "latency_p95_ms",
            )
        )
        + "</tr>"
        for w in reversed(windows[-50:])
    )


def _group_tables(latest: dict[str, Any] | None) -> str:
    """Hit rate per user group of the latest window, one table per feature."""
    groups = ""
    if latest and latest["fairness"]:
        for feature, table in latest["fairness"].items():
            groups += f"<h3>{_esc(feature)}</h3><table><tr><th>group</th><th>requests</th>"
            groups += "<th>hit rate</th></tr>"
            groups += "".join(
                f"<tr><td>{_esc(g)}</td><td>{v['requests']}</td><td>{_num3(v['hit_rate'])}</td></tr>"
                for g, v in table.items()
            )
            groups += "</table>"
    return groups


def render_recommendation_dashboard(
    report: dict[str, Any], recent: list[dict[str, Any]] | None = None
) -> str:
    """The dashboard page of a recommender's monitor report."""
    model = report["model"]
    windows = report["windows"]
    title = f"Keel monitoring — {model.get('name')} v{model.get('version')} (recommender)"

    def series(metric: str) -> list[float | None]:
        values = [w["metrics"].get(metric) for w in windows]
        return [
            None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values
        ]

    alerts = (recent or [])[-20:] + list(report.get("alerts", []))
    rows = _window_rows(windows)
    alert_rows = "".join(
        f"<tr><td>{_esc(a['severity'])}</td><td>{_esc(a['window']['label'])}</td>"
        f"<td>{_esc(a['rule']['metric'])}</td><td>{_num3(a['value'])}</td><td>{_esc(a['message'])}</td></tr>"
        for a in reversed(alerts)
    )
    groups = _group_tables(windows[-1] if windows else None)
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{_esc(title)}</h1>",
            f"<p>{report['rows']} logged requests in {len(windows)} windows of"
            f" {_esc(report['window'])}.</p>",
            "<h2>Recent alerts</h2>",
            "<table><tr><th>severity</th><th>window</th><th>metric</th><th>value</th>"
            f"<th>message</th></tr>{alert_rows}</table>"
            if alert_rows
            else "<p class='ok'>none</p>",
            "<div class='grid'>",
            "<div class='panel'><h2>Cold start and coverage</h2>",
            line_chart(
                {
                    "cold-start share": series("cold_start_share"),
                    "catalogue coverage": series("coverage"),
                },
                "cold start and coverage",
                top=1.0,
            ),
            "</div><div class='panel'><h2>Popularity drift (PSI)</h2>",
            line_chart(
                {
                    "recommended": series("popularity_psi"),
                    "requested": series("requested_popularity_psi"),
                    "consumed": series("consumed_popularity_psi"),
                },
                "popularity drift",
            ),
            "</div><div class='panel'><h2>Feedback</h2>",
            line_chart({"hit rate": series("hit_rate"), "CTR": series("ctr")}, "feedback", top=1.0)
            if any(v is not None for v in series("hit_rate"))
            else "<p>no feedback yet (send consumed items to POST /feedback)</p>",
            "</div><div class='panel'><h2>Latency (ms)</h2>",
            line_chart(
                {"p50": series("latency_p50_ms"), "p95": series("latency_p95_ms")}, "latency"
            ),
            "</div></div>",
            "<h2>Hit rate per user group (latest window)</h2>",
            groups or "<p>no feedback in the latest window</p>",
            "<h2>Windows</h2>",
            "<table><tr><th>#</th><th>window</th><th>requests</th><th>cold share</th>"
            "<th>coverage</th><th>popularity PSI</th><th>hit rate</th><th>CTR</th>"
            f"<th>hit-rate gap</th><th>p95 ms</th></tr>{rows}</table>",
            "</body></html>",
        ]
    )


MONITOR_HEADS = ("#", "from (UTC)", "requests", "cold", "coverage", "pop. PSI", "hit rate")
MONITOR_HEADS += ("CTR", "p95 ms")


def monitor_row(w: dict[str, Any], num: Any) -> list[str]:
    """One window's cells after ``#``, start and requests (``keel monitor`` table)."""
    m = w["metrics"]
    cells = [num(m.get(k)) for k in ("cold_start_share", "coverage", "popularity_psi", "hit_rate")]
    return [*cells, num(m.get("ctr")), num(m.get("latency_p95_ms"))]
