"""The monitoring dashboard: one self-contained HTML page (inline SVG, no fetches).

Readable at a glance: the verdict of the latest judged window and the open incidents
first, then drift per feature over time (a heat table of PSI with drifted cells
marked), drift share and prediction drift over time, the prediction distribution per
window, latency, performance and fairness over time where labels arrived, recent
alerts, and the training-serving skew. ``keel monitor --html`` and the server's
``GET /dashboard`` render the same page from a :class:`MonitorReport`'s dict.
"""

from __future__ import annotations

import html
from typing import Any

WIDTH, HEIGHT, PAD = 640, 180, 36
COLOURS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")

CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem;color:#222}"
    "table{border-collapse:collapse;margin:0.5rem 0 1.5rem;font-size:0.85rem}"
    "td,th{border:1px solid #ccc;padding:0.2rem 0.5rem;text-align:left;vertical-align:top}"
    "th{background:#f2f2f2}.ok{color:#2e7d32}.bad{color:#b71c1c}"
    ".grid{display:flex;flex-wrap:wrap;gap:1.5rem}.panel{min-width:320px}"
    "svg{background:#fafafa;border:1px solid #ddd}.legend span{margin-right:1rem}"
)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return _e(value)


def line_chart(series: dict[str, list[float | None]], label: str, top: float | None = None) -> str:
    """An SVG line chart: one line per series over the window index (gaps for None)."""
    values = [v for points in series.values() for v in points if v is not None]
    if not values:
        return f"<p>no {html.escape(label)} yet</p>"
    n = max(len(p) for p in series.values())
    high = top if top is not None else max(values)
    low = min(0.0, min(values))
    high = high if high > low else low + 1.0

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return HEIGHT - PAD + (2 * PAD - HEIGHT) * (v - low) / (high - low)

    parts = [
        f"<svg role='img' aria-label='{_e(label)}' width='{WIDTH}' height='{HEIGHT}'"
        f" viewBox='0 0 {WIDTH} {HEIGHT}'>",
        f"<line x1='{PAD}' y1='{HEIGHT - PAD}' x2='{WIDTH - PAD}' y2='{HEIGHT - PAD}'"
        " stroke='#999'/>",
        f"<text x='4' y='{PAD - 8}' font-size='11'>{_num(high)}</text>",
        f"<text x='4' y='{HEIGHT - PAD}' font-size='11'>{_num(low)}</text>",
        f"<text x='{WIDTH - PAD}' y='{HEIGHT - 8}' font-size='11' text-anchor='end'>window"
        f" {n - 1}</text>",
    ]
    legend = []
    for k, (name, points) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        legend.append(f"<span style='color:{colour}'>■ {_e(name)}</span>")
        run: list[str] = []
        for i, v in enumerate(points):
            if v is None:
                if len(run) > 1:
                    parts.append(_polyline(run, colour))
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v):.1f}")
            parts.append(f"<circle cx='{x(i):.1f}' cy='{y(v):.1f}' r='2.5' fill='{colour}'/>")
        if len(run) > 1:
            parts.append(_polyline(run, colour))
    parts.append("</svg>")
    return f"<div class='legend'>{''.join(legend)}</div>" + "".join(parts)


def _polyline(points: list[str], colour: str) -> str:
    return f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{' '.join(points)}'/>"


def stacked_shares(windows: list[dict[str, Any]]) -> str:
    """Prediction shares per window as stacked SVG columns."""
    classes = sorted({k for w in windows for k in w.get("prediction_share", {})})
    if not classes:
        return "<p>no class predictions (a regression model: see the score's drift)</p>"
    n = len(windows)
    step = (WIDTH - 2 * PAD) / max(n, 1)
    parts = [
        f"<svg role='img' aria-label='prediction shares' width='{WIDTH}' height='{HEIGHT}'"
        f" viewBox='0 0 {WIDTH} {HEIGHT}'>"
    ]
    for i, w in enumerate(windows):
        bottom = HEIGHT - PAD
        for k, c in enumerate(classes):
            share = w.get("prediction_share", {}).get(c, 0.0)
            h = share * (HEIGHT - 2 * PAD)
            parts.append(
                f"<rect x='{PAD + i * step:.1f}' y='{bottom - h:.1f}'"
                f" width='{max(step - 2, 1):.1f}' height='{h:.1f}'"
                f" fill='{COLOURS[k % len(COLOURS)]}'>"
                f"<title>window {i}: {_e(c)} {share:.1%}</title></rect>"
            )
            bottom -= h
    parts.append("</svg>")
    legend = "".join(
        f"<span style='color:{COLOURS[k % len(COLOURS)]}'>■ {_e(c)}</span>"
        for k, c in enumerate(classes)
    )
    return f"<div class='legend'>{legend}</div>" + "".join(parts)


def _psi_heat(windows: list[dict[str, Any]]) -> str:
    """Features × windows: PSI per cell, red where the test said drift."""
    judged = [w for w in windows if w.get("drift")]
    if not judged:
        return "<p>no window with enough rows to judge yet</p>"
    shown = judged[-24:]
    names = [c["column"] for c in shown[-1]["drift"]["columns"]]
    head = "".join(f"<th>{w['index']}</th>" for w in shown)
    rows = []
    for name in names:
        cells = []
        for w in shown:
            c = next((c for c in w["drift"]["columns"] if c["column"] == name), None)
            if c is None:
                cells.append("<td>—</td>")
                continue
            alpha = min(float(c["psi"]) / 0.5, 1.0)
            style = f"background:rgba(198,40,40,{alpha:.2f})"
            mark = " ●" if c["drifted"] else ""
            cells.append(
                f"<td style='{style}' title='p = {c['p_value']:.3g}'>{c['psi']:.3f}{mark}</td>"
            )
        rows.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    return (
        "<p>PSI per feature and window (● = the test says drift; darker = larger PSI).</p>"
        f"<table><tr><th>feature \\ window</th>{head}</tr>{''.join(rows)}</table>"
    )


def _verdict(latest: dict[str, Any] | None) -> tuple[str, str]:
    """The headline of the latest judged window and its colour (red, amber, green)."""
    if latest is None:
        verdict, colour = "not enough rows in any window to judge yet", "#555"
    else:
        drifted = latest["drift"].get("drifted_columns", []) if latest["drift"] else []
        table_drifts = bool(latest["metrics"].get("dataset_drift"))
        outputs_drift = bool(latest["metrics"].get("prediction_drift"))
        verdict = f"latest window ({latest['label']}): " + (
            ("DATASET DRIFT — " if table_drifts else f"{len(drifted)} feature(s) drift — ")
            + ", ".join(drifted[:8])
            if drifted
            else "no feature drift"
        )
        verdict += "; predictions drift" if outputs_drift else ""
        # red: the table or the outputs drift; amber: some features do; green: none
        colour = "#b71c1c" if table_drifts or outputs_drift else "#e65100" if drifted else "#2e7d32"
    return verdict, colour


def _window_rows(windows: list[dict[str, Any]]) -> str:
    """One table row per window, newest first (the last 50)."""
    return "".join(
        f"<tr><td>{w['index']}</td><td>{_e(w['label'])}</td><td>{w['rows']}</td>"
        f"<td>{'yes' if w['complete'] else 'in progress'}</td>"
        f"<td>{_num(w['metrics'].get('drift_share'))}</td>"
        f"<td>{_e(', '.join((w['drift'] or {}).get('drifted_columns', [])[:6]) or '—')}</td>"
        f"<td>{'yes' if w['metrics'].get('prediction_drift') else '—'}</td>"
        f"<td>{_num(w['metrics'].get('accuracy') or w['metrics'].get('mae'))}</td>"
        f"<td>{_num(w['metrics'].get('demographic_parity_difference'))}</td>"
        f"<td>{_num(w['metrics'].get('latency_p95_ms'))}</td></tr>"
        for w in reversed(windows[-50:])
    )


def render_dashboard(report: dict[str, Any], recent: list[dict[str, Any]] | None = None) -> str:
    """The dashboard page of a monitor report (``MonitorReport.to_dict()``)."""
    model = report["model"]
    windows = report["windows"]
    judged = [w for w in windows if w["judged"]]
    latest = judged[-1] if judged else None
    title = f"Keel monitoring — {model.get('name')} v{model.get('version')}"
    verdict, colour = _verdict(latest)

    def series(metric: str) -> list[float | None]:
        return [w["metrics"].get(metric) for w in windows]

    alerts = (recent or [])[-20:] + [a for a in report.get("alerts", []) if a not in (recent or [])]
    alert_rows = "".join(
        f"<tr><td>{_e(a['severity'])}</td><td>{_e(a['window']['label'])}</td>"
        f"<td>{_e(a['rule']['metric'])}</td><td>{_num(a['value'])}</td>"
        f"<td>{_e(a['message'])}</td></tr>"
        for a in reversed(alerts)
    )
    table_rows = _window_rows(windows)
    skew = report.get("skew") or {}
    skew_rows = "".join(
        f"<tr><td>{_e(c['column'])}</td><td>{_e(c['test'])}</td><td>{c['p_value']:.3g}</td>"
        f"<td>{c['psi']:.3f}</td><td>{'yes' if c['drifted'] else 'no'}</td>"
        f"<td>{c.get('unseen', 0)}</td></tr>"
        for c in skew.get("columns", [])
    )
    performance = {
        k: series(k)
        for k in ("accuracy", "balanced_accuracy", "roc_auc", "mae", "rmse")
        if any(v is not None for v in series(k))
    }
    fairness = {
        k: series(k)
        for k in ("demographic_parity_difference", "accuracy_difference")
        if any(v is not None for v in series(k))
    }
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            f"<p style='font-size:1.3rem;color:{colour}'><b>{_e(verdict)}</b></p>",
            f"<p>{report['rows']} logged rows in {len(windows)} windows of"
            f" {_e(report['window'])}; {len(alerts)} recent alerts.</p>",
            *(f"<p class='bad'>{_e(n)}</p>" for n in report.get("notes", []) if "not" in n),
            "<h2>Recent alerts</h2>",
            "<table><tr><th>severity</th><th>window</th><th>metric</th><th>value</th>"
            f"<th>message</th></tr>{alert_rows}</table>"
            if alert_rows
            else "<p class='ok'>none</p>",
            "<div class='grid'>",
            "<div class='panel'><h2>Drift over time</h2>",
            line_chart(
                {
                    "share of features drifting": series("drift_share"),
                    "predictions drift (1 = yes)": series("prediction_drift"),
                },
                "drift over time",
                top=1.0,
            ),
            "</div><div class='panel'><h2>Prediction distribution</h2>",
            stacked_shares(windows),
            "</div><div class='panel'><h2>Latency (ms)</h2>",
            line_chart(
                {"p50": series("latency_p50_ms"), "p95": series("latency_p95_ms")}, "latency"
            ),
            "</div><div class='panel'><h2>Performance (labelled rows)</h2>",
            line_chart(performance, "performance")
            if performance
            else "<p>no labels yet (send them to POST /feedback)</p>",
            "</div><div class='panel'><h2>Fairness over time</h2>",
            line_chart(fairness, "fairness")
            if fairness
            else "<p>no sensitive feature with two groups of 20+ rows in a window yet</p>",
            "</div></div>",
            "<h2>Drift per feature over time</h2>",
            _psi_heat(windows),
            "<h2>Windows</h2>",
            "<table><tr><th>#</th><th>window</th><th>rows</th><th>complete</th>"
            "<th>drift share</th><th>drifted features</th><th>prediction drift</th>"
            "<th>accuracy / MAE</th><th>DP difference</th><th>p95 ms</th></tr>"
            f"{table_rows}</table>",
            "<h2>Training-serving skew (every row served vs the training data)</h2>",
            "<table><tr><th>feature</th><th>test</th><th>p</th><th>PSI</th><th>drifted</th>"
            f"<th>unseen</th></tr>{skew_rows}</table>"
            if skew_rows
            else "<p>no rows served yet</p>",
            "</body></html>",
        ]
    )


__all__ = ["line_chart", "render_dashboard", "stacked_shares"]
