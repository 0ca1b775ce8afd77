"""The HTML page of one A/B test: decision, arms, SRM, effects and their history.

One self-contained page (inline SVG, no fetches), rendered from :func:`analyze`'s
result and :func:`timeline`'s points; ``keel experiment analyze --html`` writes it and
the server's ``GET /experiments/NAME`` answers it.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

from keel.monitoring._dashboard import CSS, line_chart

COLOUR = {"ship": "#2e7d32", "keep the champion": "#b71c1c", "keep running": "#e65100"}


def _e(value: Any) -> str:
    return html.escape(str(value))


def _n(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        return f"{value:.{digits}g}"
    return _e(value)


def _finite(value: Any) -> float | None:
    """A number a chart can draw, or None (a gap)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _design_table(result: dict[str, Any]) -> str:
    e, counts = result["experiment"], result["counts"]
    settings = e.get("settings") or {}
    progress = counts.get("progress")
    guardrails = ", ".join(f"{k} ({v:g})" for k, v in (settings.get("guardrails") or {}).items())
    return _table(
        ["", ""],
        [
            ["split", f"{_n(e['split'])} % of units to the challenger"],
            ["unit", _e(e["unit_field"])],
            ["started", _e(_when(e["started"]))],
            ["days run", _n(counts["days"])],
            ["planned units per arm", _n(counts.get("planned_per_arm"))],
            ["progress", f"{progress:.0%}" if progress is not None else "—"],
            ["alpha", _n(settings.get("alpha", 0.05))],
            ["success metrics", _e(", ".join(settings.get("metrics") or []))],
            ["guardrails (margin)", _e(guardrails or "none")],
        ],
    )


def _arms_and_srm(result: dict[str, Any]) -> list[str]:
    e, counts, srm = result["experiment"], result["counts"], result["srm"]
    rows = [
        [
            arm,
            _e(e[f"{arm}_version"]),
            f"{counts['units'][arm]:,}",
            f"{counts['requests'][arm]:,}",
        ]
        for arm in ("champion", "challenger")
    ]
    verdict = (
        "FLAGGED (p &lt; 0.001): the assignment is broken; no effect can be trusted"
        if srm["flagged"]
        else "the arms' counts fit the planned split"
    )
    return [
        "<h2>Arms</h2>",
        _table(["arm", "version", "units", "requests"], rows),
        f"<p>Units seen in both arms (left out): {counts['units_in_both_arms']:,}.</p>",
        "<h2>Sample-ratio mismatch</h2>",
        f"<p id='srm' class='{'bad' if srm['flagged'] else 'ok'}'>chi-square"
        f" {_n(srm['statistic'])}, p {_n(srm['p_value'])}: " + verdict + "</p>",
    ]


EFFECT_COLUMNS = [
    "metric",
    "role",
    "champion",
    "challenger",
    "effect",
    "relative",
    "interval",
    "p",
    "Holm p",
    "sequential p",
    "test",
]


def _effects_table(effects: list[dict[str, Any]]) -> str:
    rows = [
        [
            _e(x["metric"]),
            _e(x["role"]),
            _n(x["control"]),
            _n(x["treatment"]),
            _n(x["absolute"]),
            f"{x['relative']:+.2%}" if _finite(x["relative"]) is not None else "—",
            f"{_n(x['low'])} to {_n(x['high'])}",
            _n(x["p_value"]),
            _n(x.get("holm_p_value")),
            _n(x["sequential_p_value"]),
            _e(x["test"]),
        ]
        for x in effects
    ]
    return _table(EFFECT_COLUMNS, rows)


def _history(effects: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[str]:
    """Cumulative effect charts per metric and units per arm over the looks."""
    parts: list[str] = []
    for effect in effects:
        metric = effect["metric"]
        known = [p for p in points if metric in p["effects"]]
        if len(known) < 2:
            continue
        series = {
            "effect": [_finite(p["effects"][metric]["absolute"]) for p in known],
            "low": [_finite(p["effects"][metric]["low"]) for p in known],
            "high": [_finite(p["effects"][metric]["high"]) for p in known],
            "no effect": [0.0] * len(known),
        }
        parts += [
            f"<h3>{_e(metric)}: cumulative effect and its interval</h3>",
            line_chart(series, f"{metric} effect over time"),
        ]
    if len(points) < 2:
        return [*parts, "<p>Not enough looks yet for the history.</p>"]
    units = {arm: [float(p["units"][arm]) for p in points] for arm in ("champion", "challenger")}
    return [*parts, "<h3>Units per arm</h3>", line_chart(units, "units per arm over time")]


def render_experiment_page(result: dict[str, Any], points: list[dict[str, Any]]) -> str:
    """The page of one analysed experiment (``analyze()``'s dict, ``timeline()``'s list)."""
    e = result["experiment"]
    decision = result["decision"]
    title = (
        f"A/B test {e['name']} — {e['model_name']}: version {e['champion_version']}"
        f" (champion) vs {e['challenger_version']} (challenger)"
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p id='decision' style='font-size:1.2rem;color:{COLOUR.get(decision, '#222')}'>"
        f"<strong>{_e(decision.upper())}</strong>: {_e(result['reason'])}</p>",
        f"<p>Status {_e(e['status'])}; analysed {_e(_when(result.get('at')))}.</p>",
        "<h2>Design</h2>",
        _design_table(result),
        *_arms_and_srm(result),
        "<h2>Effects (challenger − champion)</h2>",
        _effects_table(result["effects"]),
        "<h2>Over time</h2>",
        *_history(result["effects"], points),
        "<p>Fixed-horizon tests are valid at the planned sample; before it, only the"
        " always-valid sequential p-value (mSPRT) decides. See docs/experiments.md.</p>"
        "</body></html>",
    ]
    return "".join(parts)


__all__ = ["render_experiment_page"]
