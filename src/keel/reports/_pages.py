"""The run report: one JSON file for machines and one self-contained HTML page for people."""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from keel.errors import KeelInputError
from keel.reports._card import (
    build_card,
    build_datasheet,
    measured_risks,
    render_markdown,
    resource_table,
)
from keel.reports._card import render_html as render_card_html
from keel.reports._document import RunReport


def write_reports(report: RunReport, folder: Path) -> dict[str, str]:
    """Write ``report.json`` and ``report.html`` into ``folder`` (atomically)."""
    paths = {
        "json": folder / "report.json",
        "html": folder / "report.html",
    }
    atomic_write(paths["json"], json.dumps(report.to_dict(), indent=2, sort_keys=True))
    atomic_write(paths["html"], render_html(report))
    return {k: str(v) for k, v in paths.items()}


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (creating its folder).

    Raises
    ------
    KeelInputError
        When the path cannot be written (a file where a folder should be, no
        permission, a full disk): one line naming the path, exit code 2.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise KeelInputError(
            f"{path}: cannot write it ({exc.strerror or type(exc).__name__}); choose another path"
        ) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bars(candidates: list[dict[str, Any]], metric: str) -> str:
    """An inline SVG bar chart of the primary metric per candidate (no JavaScript)."""
    values = [(c["name"], c["validation"].get(metric)) for c in candidates]
    return _named_bars(values, f"validation {metric} by candidate")


def _xy_svg(points: list[tuple[float, float]], label: str, diagonal: bool = False) -> str:
    """A small inline SVG line plot (x and y scaled to the data; optional y = x line)."""
    if not points:
        return ""
    width, height, pad = 320, 220, 30
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    low = min(xs + ys) if diagonal else min(ys)
    high = max(xs + ys) if diagonal else max(ys)
    x_low, x_high = (low, high) if diagonal else (min(xs), max(xs))
    x_span, y_span = (x_high - x_low) or 1.0, (high - low) or 1.0

    def at(x: float, y: float) -> str:
        px = pad + (width - 2 * pad) * (x - x_low) / x_span
        py = height - pad - (height - 2 * pad) * (y - low) / y_span
        return f"{px:.1f},{py:.1f}"

    line = " ".join(at(x, y) for x, y in points)
    extra = (
        f'<line x1="{at(low, low).split(",")[0]}" y1="{at(low, low).split(",")[1]}"'
        f' x2="{at(high, high).split(",")[0]}" y2="{at(high, high).split(",")[1]}"'
        ' stroke="#999" stroke-dasharray="4"/>'
        if diagonal
        else ""
    )
    return (
        f'<svg role="img" aria-label="{html.escape(label)}" width="{width}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg">{extra}'
        f'<polyline points="{line}" fill="none" stroke="#3b6ea5" stroke-width="2"/>'
        + "".join(
            f'<circle cx="{at(x, y).split(",")[0]}" cy="{at(x, y).split(",")[1]}"'
            ' r="3" fill="#3b6ea5"/>'
            for x, y in points
        )
        + f'<text x="{pad}" y="14" font-size="12">{html.escape(label)}</text></svg>'
    )


def _diagnostics_html(diagnostics: dict[str, Any]) -> list[str]:
    parts = []
    if "calibration" in diagnostics:
        points = [(c["predicted"], c["observed"]) for c in diagnostics["calibration"]]
        parts += [
            "<h2>Calibration (test, 10 quantile bins)</h2>",
            _xy_svg(points, "observed rate vs predicted probability", diagonal=True),
        ]
    if "confusion_matrix" in diagnostics:
        matrix = diagnostics["confusion_matrix"]
        parts += [
            "<h2>Confusion matrix (test; rows: truth, columns: prediction)</h2>",
            _table(
                ["", *matrix["labels"]],
                [
                    [label, *row]
                    for label, row in zip(matrix["labels"], matrix["counts"], strict=True)
                ],
            ),
            _table(
                ["class", "precision", "recall", "f1", "support"],
                [
                    [c, r["precision"], r["recall"], r["f1-score"], r["support"]]
                    for c, r in diagnostics.get("per_class", {}).items()
                ],
            ),
        ]
    curve = diagnostics.get("learning_curve")
    if curve and curve.get("points"):
        points = curve["points"]
        parts += [
            f"<h2>Learning curve ({html.escape(curve['metric'])})</h2>",
            f"<p><b>{html.escape(curve['diagnosis'])}</b></p>",
            _table(
                ["rows", "train", "validation"],
                [[p["rows"], p["train"], p["validation"]] for p in points],
            ),
            _xy_svg([(p["rows"], p["validation"]) for p in points], "validation score vs rows"),
        ]
    if "residuals" in diagnostics:
        points = [(r["predicted_mean"], r["residual_mean"]) for r in diagnostics["residuals"]]
        parts += [
            "<h2>Residuals by predicted decile (test)</h2>",
            _xy_svg(points, "mean residual vs mean prediction"),
        ]
    return parts


def _intervals_table(assessment: dict[str, Any]) -> str:
    """Each test metric with its 95 % bootstrap interval and its cross-validation spread."""
    cv = assessment.get("cross_validation", {})
    rows = []
    for name, interval in sorted(assessment.get("intervals", {}).items()):
        fold = cv.get(name, {})
        rows.append(
            [
                name,
                interval["value"],
                f"{_fmt(interval['low'])} – {_fmt(interval['high'])}",
                f"{_fmt(fold.get('mean'))} ± {_fmt(fold.get('std'))}" if fold else "—",
            ]
        )
    return _table(["metric", "test", "95% bootstrap CI", "CV mean ± std"], rows)


def _assessment_html(report: RunReport) -> list[str]:
    assessment = report.assessment
    if not assessment:
        return []
    parts = ["<h2>Confidence, gate and cross-validation</h2>", _intervals_table(assessment)]
    shipped = assessment.get("shipped") or {}
    if shipped.get("note"):
        parts.append(f"<p><b>Shipped model</b>: {html.escape(shipped['note'])}.</p>")
    elif "refit_rows" in assessment:
        parts.append(
            "<p>The test metrics are those of the shipped model, fitted on"
            f" {assessment['refit_rows']} rows (train + validation).</p>"
        )
    gate = assessment.get("gate")
    if gate:
        d = gate["difference"]
        verdict = "passed" if gate["passed"] else "FAILED: registered without an alias"
        parts.append(
            f"<p><b>Baseline gate {html.escape(verdict)}</b>: {html.escape(gate['model'])}"
            f" − {html.escape(gate['baseline'])} on test {html.escape(gate['metric'])} ="
            f" {d['value']:+.4f} (95% CI {d['low']:+.4f} to {d['high']:+.4f}),"
            f" margin {gate['margin']:g}.</p>"
        )
    versus = assessment.get("versus_champion")
    if versus:
        verdict = "promoted to champion" if versus["promote"] else "stays challenger"
        parts.append(
            f"<p><b>Against the champion: {verdict}</b>: {html.escape(versus['reason'])}.</p>"
        )
    threshold = assessment.get("threshold") or {}
    if threshold.get("note"):
        parts.append(f"<p>{html.escape(threshold['note'])}.</p>")
    elif threshold.get("value") is not None:
        at = threshold["test_at_0.5"]
        parts.append(
            f"<p>Decision threshold {threshold['value']:.4f}, chosen on validation for"
            f" {html.escape(threshold['objective'])}: the test metrics above and the"
            " server's answers use it. At 0.5 instead the test rows would give"
            f" precision {at['precision']:.4f}, recall {at['recall']:.4f},"
            f" F1 {at['f1']:.4f}, accuracy {at['accuracy']:.4f}.</p>"
        )
    parts.extend(_diagnostics_html(assessment.get("diagnostics", {})))
    tests = assessment.get("behaviour", [])
    if tests:
        parts.append("<h2>Behaviour tests</h2>")
        parts.append(
            _table(
                ["test", "on", "result", "detail", "offending rows (first)"],
                [
                    [
                        t["kind"],
                        t.get("feature") or t.get("slice"),
                        "passed" if t["passed"] else "FAILED",
                        t["detail"],
                        json.dumps(t["offending_rows"][:1], default=str),
                    ]
                    for t in tests
                ],
            )
        )
    parts.extend(_fairness_html(assessment.get("fairness")))
    parts.extend(_mitigation_html(assessment.get("mitigation")))
    parts.extend(_explanations_html(assessment.get("explanations")))
    slices = assessment.get("slices", [])
    if slices:
        parts.append("<h2>Slices (worst first)</h2>")
        keys = [
            k
            for k in slices[0]
            if k not in ("feature", "value", "rows", "judged", "flagged", "gap")
        ]
        parts.append(
            _table(
                ["feature", "value", "rows", *keys, "gap", "flagged"],
                [
                    [
                        s["feature"],
                        s["value"],
                        s["rows"],
                        *[s.get(k) for k in keys],
                        s["gap"],
                        "yes" if s["flagged"] else ("" if s["judged"] else "too small to judge"),
                    ]
                    for s in slices[:25]
                ],
            )
        )
        parts.append("<p>The 50 worst-predicted test rows are in <code>worst_rows.csv</code>.</p>")
    return parts


def _interval_bars(groups: list[dict[str, Any]], metric: str) -> str:
    """An inline SVG of ``metric`` per group: a bar, and its 95 % interval as a whisker."""
    shown = [g for g in groups if metric in g][:30]
    if not shown:
        return ""
    top = max(max(g[metric]["high"], g[metric]["value"]) for g in shown if g[metric]) or 1.0
    top = top if math.isfinite(top) and top > 0 else 1.0
    width, bar_h, gap, label_w = 560, 18, 6, 190
    scale = (width - label_w - 70) / top
    rows = []
    for i, g in enumerate(shown):
        y = i * (bar_h + gap)
        value, low, high = g[metric]["value"], g[metric]["low"], g[metric]["high"]
        colour = "#3b6ea5" if g["judged"] else "#aab4c0"
        rows.append(
            f'<text x="0" y="{y + 13}" font-size="12">{html.escape(str(g["group"])[:28])}'
            f" (n={g['rows']})</text>"
            f'<rect x="{label_w}" y="{y}" width="{max(1.0, value * scale):.1f}"'
            f' height="{bar_h}" fill="{colour}"/>'
        )
        if math.isfinite(low) and math.isfinite(high):
            rows.append(
                f'<line x1="{label_w + low * scale:.1f}" x2="{label_w + high * scale:.1f}"'
                f' y1="{y + bar_h / 2}" y2="{y + bar_h / 2}" stroke="#111" stroke-width="2"/>'
            )
        right = max(value, high) if math.isfinite(high) else value
        rows.append(
            f'<text x="{label_w + right * scale + 6:.1f}" y="{y + 13}"'
            f' font-size="12">{value:.3f}</text>'
        )
    height = len(shown) * (bar_h + gap)
    return (
        f'<svg role="img" aria-label="{html.escape(metric)} by group" width="{width}"'
        f' height="{height}" xmlns="http://www.w3.org/2000/svg">' + "".join(rows) + "</svg>"
    )


def _fairness_html(fairness: dict[str, Any] | None) -> list[str]:
    if not fairness or not fairness.get("features"):
        return []
    parts = ["<h2>Fairness</h2>"]
    if not fairness["judged"]:
        verdict = "reported, not judged: no limits are configured under <code>fairness:</code>"
    elif fairness["passed"]:
        verdict = f"<b>fairness gate passed</b> ({len(fairness['limits'])} limits)"
    else:
        verdict = "<b>fairness gate FAILED</b>: registered without an alias"
    parts.append(
        f"<p>Decisions on the test rows, per sensitive group; 95 % bootstrap intervals."
        f" Groups with fewer than {fairness['min_group_size']} rows are shown in grey and"
        f" are not judged. Verdict: {verdict}.</p>"
    )
    if fairness["breaches"]:
        parts.append(
            _table(
                ["feature", "measure", "value", "limit", "lowest group", "highest group"],
                [
                    [
                        b["feature"],
                        b["measure"],
                        b["value"],
                        f"{b['kind']} {b['limit']:g}",
                        _group_text(b.get("groups", {}).get("lowest")),
                        _group_text(b.get("groups", {}).get("highest")),
                    ]
                    for b in fairness["breaches"]
                ],
            )
        )
    headline = {"binary": "selection_rate", "multiclass": "accuracy", "regression": "rmse"}
    metric = headline.get(fairness["task"], "accuracy")
    for feature, found in fairness["features"].items():
        parts.append(f"<h3>{html.escape(feature)}</h3>")
        if found.get("bins"):
            parts.append(f"<p>Binned at {html.escape(str(found['bins']))}.</p>")
        parts.append(_interval_bars(found["groups"], metric))
        names = [k for k in found["groups"][0] if k not in ("group", "rows", "judged")]
        parts.append(
            _table(
                ["group", "rows", *names],
                [
                    [
                        g["group"],
                        g["rows"],
                        *[
                            f"{g[n]['value']:.4f} ({_fmt(g[n]['low'])}–{_fmt(g[n]['high'])})"
                            for n in names
                        ],
                    ]
                    for g in found["groups"]
                ],
            )
        )
        measures = found["measures"]
        if measures:
            parts.append(
                _table(
                    ["measure", "judged groups", "all groups"],
                    [[k, v, found["all_groups"].get(k)] for k, v in measures.items()],
                )
            )
    return parts


def _named_bars(pairs: list[tuple[str, float]], label: str) -> str:
    """An inline SVG bar chart of (name, value) pairs (values may be negative)."""
    pairs = [(n, v) for n, v in pairs if v is not None and math.isfinite(v)][:20]
    if not pairs:
        return ""
    top = max(abs(v) for _, v in pairs) or 1.0
    width, bar_h, gap, label_w = 560, 18, 6, 190
    rows = []
    for i, (name, value) in enumerate(pairs):
        y = i * (bar_h + gap)
        w = max(1.0, (width - label_w - 80) * abs(value) / top)
        colour = "#3b6ea5" if value >= 0 else "#b5523b"
        rows.append(
            f'<text x="0" y="{y + 13}" font-size="12">{html.escape(str(name)[:30])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 13}" font-size="12">{value:.4g}</text>'
        )
    return (
        f'<svg role="img" aria-label="{html.escape(label)}" width="{width}"'
        f' height="{len(pairs) * (bar_h + gap)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(rows)
        + "</svg>"
    )


def _explanations_html(doc: dict[str, Any] | None) -> list[str]:
    if not doc:
        return []
    parts = [
        "<h2>Why the model decides</h2>",
        f"<p>SHAP ({html.escape(doc['explainer'])}) on {doc['rows_explained']} test rows,"
        " one-hot columns folded back into their original features; values are in terms"
        f" of {html.escape(doc['output'])}. Mean |SHAP| per feature:</p>",
        _named_bars(list(doc["shap_importance"].items()), "mean absolute SHAP by feature"),
    ]
    if doc.get("note"):
        parts.insert(1, f"<p class='note'>{html.escape(doc['note'])}</p>")
    permutation = doc["permutation_importance"]
    parts.append(
        f"<p>Permutation importance: drop in test {html.escape(permutation['metric'])}"
        f" when the feature is shuffled ({permutation['rows']} rows, mean ± std).</p>"
    )
    parts.append(
        _table(
            ["feature", "drop", "std"],
            [[k, v["mean"], v["std"]] for k, v in list(permutation["features"].items())[:15]],
        )
    )
    for feature, found in doc["partial_dependence"].items():
        parts.append(
            f"<h3>Partial dependence: {html.escape(feature)}</h3>"
            f"<p>Average {html.escape(found['output'])} as {html.escape(feature)} alone"
            " varies.</p>"
        )
        average = found["average"]
        if average and isinstance(average[0], list):  # multiclass: first class shown
            average = average[0]
        if found["categorical"]:
            parts.append(
                _named_bars(
                    [(str(g), a) for g, a in zip(found["grid"], average, strict=True)],
                    f"partial dependence on {feature}",
                )
            )
        else:
            points = [(float(g), float(a)) for g, a in zip(found["grid"], average, strict=True)]
            parts.append(_xy_svg(points, f"partial dependence on {feature}"))
    example = doc.get("example") or {}
    if example:
        local = example["explanation"]
        parts.append(
            "<h3>One test row, explained</h3>"
            f"<p>Base {local['base']:.4f} + contributions = {local['total']:.4f}"
            f" ({html.escape(local['output'])}).</p>"
        )
        parts.append(
            _table(
                ["feature", "value", "contribution"],
                [[c["feature"], c["value"], c["contribution"]] for c in local["contributions"]],
            )
        )
        hint = example.get("counterfactual")
        if hint:
            parts.append(
                f"<p><b>Counterfactual hint (approximate)</b>: changing"
                f" {html.escape(hint['feature'])} from {html.escape(str(hint['from']))} to"
                f" {html.escape(str(hint['to']))} moves the probability from"
                f" {hint['probability_before']:.3f} to {hint['probability_after']:.3f} and"
                f" flips the decision. {html.escape(hint['note'])}.</p>"
            )
    return parts


def _mitigation_html(mitigation: dict[str, Any] | None) -> list[str]:
    if not mitigation:
        return []
    before, after = mitigation["before"], mitigation["after"]
    rows = [
        [f"test {name}", value, after["metrics"].get(name)]
        for name, value in sorted(before["metrics"].items())
    ]
    for feature, measures in before["fairness"].items():
        for measure, value in measures.items():
            rows.append([f"{feature}: {measure}", value, after["fairness"][feature].get(measure)])
    method = mitigation["method"]
    if mitigation.get("constraint"):
        method += f" (constraint: {mitigation['constraint']})"
    parts = [
        f"<h3>Mitigation: {html.escape(method)}</h3>",
        "<p>The same model without mitigation (before) and with it (after, the one"
        " packaged), on the same test rows.</p>",
        _table(["", "before", "after (shipped)"], rows),
    ]
    if before.get("decision_threshold") is not None:
        parts.append(
            f"<p>Before: decided at P(positive) &ge; {before['decision_threshold']:.3f}.</p>"
        )
    if mitigation.get("sensitive_features_at_prediction"):
        parts.append(
            "<p><strong>The shipped model needs the sensitive features at prediction"
            " time</strong>: it applies a threshold per group. The server refuses rows"
            " without them.</p>"
        )
    return parts


def _group_text(group: dict[str, Any] | None) -> str:
    if not group:
        return ""
    return f"{group['group']} ({group['value']:.3f}, n={group['rows']})"


REPORT_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}"
    "table{border-collapse:collapse;margin:0.5rem 0 1.5rem}"
    "td,th{border:1px solid #ccc;padding:0.25rem 0.6rem;text-align:left;"
    "overflow-wrap:anywhere}"
    "th{background:#f2f2f2}code{background:#f6f6f6;padding:0 0.2rem}"
)


def render_html(report: RunReport) -> str:
    """Render the report as one HTML page with no external resources."""
    model = report.model
    data = report.data
    primary = report.primary_metric
    candidates = report.candidates
    test_rows = sorted(report.test_metrics.items())
    cand_metrics = sorted({k for c in candidates for k in c["validation"]})
    cand_rows = [
        [
            c["name"] + (" (chosen)" if c["name"] == model.candidate else ""),
            f"{c['fit_seconds']:.2f}s",
        ]
        + [c["validation"].get(k, "—") for k in cand_metrics]
        for c in candidates
    ]
    schema_rows = [
        [
            c["name"],
            c["kind"],
            c.get("role", "feature"),
            c.get("nullable", False),
            c.get("note", ""),
        ]
        for c in report.schema.get("columns", [])
    ]
    title = f"Keel run report — {model.name} v{model.version}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Task <b>{html.escape(report.task)}</b>; registered as "
        f"<code>models:/{html.escape(model.name)}@{html.escape(str(model.alias))}</code>"
        f" (version {html.escape(str(model.version))}); MLflow run "
        f"<code>{html.escape(report.run_id)}</code>.</p>",
        "<h2>Test metrics of the chosen model</h2>",
        _table(["metric", "value"], [list(r) for r in test_rows]),
        f"<h2>Candidates (validation; primary metric: {html.escape(primary)})</h2>",
        _bars(candidates, primary),
        _table(["candidate", "fit time", *cand_metrics], cand_rows),
        *_assessment_html(report),
        "<h2>Data lineage</h2>",
        _table(
            ["what", "value"],
            [
                ["source", data["source"]],
                ["content digest", data["digest"]],
                ["rows", data["rows"]],
                ["rows without a target (dropped)", data.get("rows_without_target", 0)],
                ["snapshot", data["snapshot"]],
                ["schema digest", data["schema_digest"]],
                ["split digest", data["split_digest"]],
                ["split sizes", json.dumps(data["split_sizes"])],
                *[[f"lineage: {k}", v] for k, v in sorted(data.get("lineage", {}).items())],
            ],
        ),
        "<h2>Split and leakage checks</h2>",
        f"<p>Method <b>{html.escape(str(data.get('split_method', '')))}</b>; "
        f"{html.escape(json.dumps(data.get('split_details', {})))}</p>",
        _table(
            ["feature", "alone predicts the target with", "score"],
            [
                [f["feature"], f["metric"], f["score"]]
                for f in data.get("strongest_single_features", [])
            ],
        ),
        _table(["class", "share"], [[k, v] for k, v in data.get("class_balance", {}).items()])
        if data.get("class_balance")
        else "",
        "<h2>Personal data</h2>",
        f"<p>Engine: {html.escape(str(data.get('pii', {}).get('engine', '')))}</p>",
        ""
        if not data.get("pii", {}).get("columns")
        else _table(
            ["column", "action", "rows with PII", "entities (counts only)"],
            [
                [
                    name,
                    info.get("action") or "scan",
                    info.get("rows_with_pii", "—"),
                    json.dumps(info.get("entities", {})),
                ]
                for name, info in data.get("pii", {}).get("columns", {}).items()
            ],
        ),
        "<h2>Schema</h2>",
        _table(["column", "kind", "role", "nullable", "note"], schema_rows),
        *_robustness_html(
            report.assessment.get("robustness"),
            (report.assessment.get("explanations") or {}).get("rules"),
        ),
        *_resources_html(report.assessment.get("resources")),
        "</body></html>",
    ]
    return "\n".join(parts)


def _robustness_html(found: dict[str, Any] | None, rules: dict[str, Any] | None) -> list[str]:
    parts: list[str] = []
    if found:
        curve = found["noise_curve"]
        budget = found["minimal_change"]["curve"]
        parts += [
            "<h2>Robustness</h2>",
            "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in found["summary"]) + "</ul>",
            f"<p>Gate: <b>{html.escape(found['verdict'])}</b>.</p>",
            "<p>Share of "
            + html.escape(found["unit"])
            + " flipped by Gaussian noise (x: noise in standard deviations of each numeric"
            " feature):</p>",
            _xy_svg([(p["level"], p["flip_rate"]) for p in curve], "flip rate against noise level"),
            "<p>Share of rows whose decision flips with one feature changed by at most x"
            " standard deviations (a category swap counts 1):</p>",
            _xy_svg([(p["budget"], p["share"]) for p in budget], "rows flipped within budget"),
            _table(
                ["check", "value", "limit", "passed"],
                [[c["what"], c["value"], c["limit"], c["passed"]] for c in found["checks"]],
            )
            if found["checks"]
            else "<p>No limit set under <code>robustness:</code>: measured, not judged.</p>",
            _table(
                ["feature", "flip rate when missing", "flip rate when its category is swapped"],
                [
                    [name, rate, found["category_swaps"].get(name, "—")]
                    for name, rate in list(found["missing"].items())[:10]
                ],
            ),
        ]
    if rules:
        parts += [
            "<h2>Rules that mimic the model</h2>",
            f"<p>A depth-{rules['depth']} tree fitted to the model's decisions; fidelity"
            f" {rules['fidelity']:.3f} ({html.escape(rules['fidelity_measure'])}).</p>",
            f"<pre>{html.escape(rules['text'])}</pre>",
        ]
    return parts


def _resources_html(resources: list[dict[str, Any]] | None) -> list[str]:
    if not resources:
        return []
    return [
        "<h2>Resources per stage (this run, up to the report)</h2>",
        _table(*resource_table(resources)),
    ]


# -- keel validate ------------------------------------------------------------------------


def _histogram_svg(stats: dict[str, Any]) -> str:
    """Inline SVG histogram of a numeric column's profile (under/overflow bins dropped)."""
    bins = stats["bins"][1:-1]
    top = max(bins) if bins and max(bins) > 0 else 1
    width, height = 300, 80
    bar = width / max(1, len(bins))
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - height * b / top:.1f}" width="{max(bar - 1, 1):.1f}"'
        f' height="{height * b / top:.1f}" fill="#3b6ea5"><title>{b}</title></rect>'
        for i, b in enumerate(bins)
    )
    low, high = stats["edges"][0], stats["edges"][-1]
    return (
        f'<svg role="img" aria-label="histogram" width="{width}" height="{height + 14}"'
        f' xmlns="http://www.w3.org/2000/svg">{rects}'
        f'<text x="0" y="{height + 12}" font-size="10">{low:g}</text>'
        f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">{high:g}</text>'
        "</svg>"
    )


def _categories_svg(stats: dict[str, Any]) -> str:
    """Inline SVG bar chart of a categorical column's most frequent values."""
    top = stats["top"][:8]
    if not top:
        return ""
    width, row = 300, 16
    most = max(t["count"] for t in top) or 1
    parts = []
    for i, t in enumerate(top):
        w = 150 * t["count"] / most
        parts.append(
            f'<text x="0" y="{i * row + 12}" font-size="11">'
            f"{html.escape(str(t['value'])[:20])}</text>"
            f'<rect x="130" y="{i * row + 2}" width="{w:.1f}" height="{row - 4}" fill="#6a8f3b"/>'
            f'<text x="{134 + w:.1f}" y="{i * row + 12}" font-size="10">'
            f"{100 * t['frequency']:.1f}%</text>"
        )
    return (
        f'<svg role="img" aria-label="top categories" width="{width}" height="{len(top) * row}"'
        f' xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


# pages with a table and a card per column (validation, drift)
COLUMNS_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:75rem;color:#222}"
    "table{border-collapse:collapse;margin:0.5rem 0 1.5rem}"
    "td,th{border:1px solid #ccc;padding:0.25rem 0.6rem;text-align:left;vertical-align:top}"
    "th{background:#f2f2f2}.cols{display:flex;flex-wrap:wrap;gap:1rem}"
    ".col{border:1px solid #ddd;padding:0.5rem;width:320px}.col h3{margin:0;font-size:1rem}"
    ".col p{font-size:0.8rem;color:#555}"
)


def render_validation_html(report: dict[str, Any], profile: dict[str, Any]) -> str:
    """One self-contained page: verdict, every violation with example rows, column plots."""
    verdict = "valid" if report["valid"] else f"{len(report['violations'])} rule(s) broken"
    colour = "#2e7d32" if report["valid"] else "#b71c1c"
    violation_rows = [
        [
            v["column"],
            v["check"],
            v["failing_rows"],
            "; ".join(
                (f"row {e['row']}: " if "row" in e else "") + repr(e["value"])
                for e in v["examples"]
            ),
        ]
        for v in report["violations"]
    ]
    columns = []
    for name, stats in profile["columns"].items():
        if stats["type"] == "numeric":
            facts = (
                f"count {stats['count']}, missing {stats['missing']}, mean {_fmt(stats['mean'])},"
                f" std {_fmt(stats['std'])}, min {_fmt(stats['min'])}, max {_fmt(stats['max'])}"
            )
            plot = _histogram_svg(stats)
        else:
            facts = (
                f"count {stats['count']}, missing {stats['missing']}, distinct {stats['distinct']}"
            )
            plot = _categories_svg(stats)
        columns.append(f"<div class='col'><h3>{html.escape(name)}</h3><p>{facts}</p>{plot}</div>")
    css = COLUMNS_CSS
    title = f"Keel data validation — {Path(report['data']).name}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{css}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p style='font-size:1.3rem;color:{colour}'><b>{html.escape(verdict)}</b></p>",
        _table(
            ["data", "digest", "rows", "columns", "schema"],
            [
                [
                    report["data"],
                    report["digest"],
                    report["rows"],
                    report["columns"],
                    report["schema"],
                ]
            ],
        ),
        "<h2>Violations</h2>",
        _table(["column", "rule", "failing rows", "examples"], violation_rows)
        if violation_rows
        else "<p>None.</p>",
        "<h2>Columns</h2><div class='cols'>",
        *columns,
        "</div></body></html>",
    ]
    return "\n".join(parts)


def write_validation_report(
    report: dict[str, Any], profile: dict[str, Any], folder: Path
) -> dict[str, str]:
    """Write ``validation.json``, ``profile.json`` and ``validation.html`` into ``folder``."""
    paths = {
        "json": folder / "validation.json",
        "profile": folder / "profile.json",
        "html": folder / "validation.html",
    }
    atomic_write(paths["json"], json.dumps(report, indent=2, default=str))
    atomic_write(paths["profile"], json.dumps(profile, indent=2))
    atomic_write(paths["html"], render_validation_html(report, profile))
    return {k: str(v) for k, v in paths.items()}


def write_card(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    profile: dict[str, Any] | None,
    folder: Path,
    loadtest: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write the card, datasheet, runbook and impact assessment into ``folder``.

    ``model_card.{md,html}``, ``datasheet.md``, ``runbook.{md,html}`` and
    ``impact_assessment.{md,html}``. ``loadtest``: the version's latest `keel loadtest`
    result, for the latency section; ``config``: the keel.yaml the version ran with
    (serving, monitoring, privacy and feature descriptions), as a dict.
    """
    from keel.reports._governance import write_governance

    config = {**(config or {}), "card": card_config}
    title = f"Model card: {registry['name']} version {registry['version']}"
    sections = build_card(report, card_config, registry, loadtest)
    sheet = build_datasheet(report, card_config, profile, config)
    sheet_title = f"Datasheet: training data of {registry['name']} version {registry['version']}"
    paths = {
        "model_card_md": folder / "model_card.md",
        "model_card_html": folder / "model_card.html",
        "datasheet_md": folder / "datasheet.md",
    }
    atomic_write(paths["model_card_md"], render_markdown(title, sections))
    atomic_write(paths["model_card_html"], render_card_html(title, sections))
    atomic_write(paths["datasheet_md"], render_markdown(sheet_title, sheet))
    facts = {**registry, "task": report.task, "run_id": report.run_id}
    governance = write_governance(folder, facts, config, measured_risks(report))
    return {**{k: str(v) for k, v in paths.items()}, **governance}


def _shares_svg(column: dict[str, Any]) -> str:
    """Reference and current shares per bin, side by side (inline SVG)."""
    bins = column["bins"]
    if not bins:
        return ""
    width, height, pad = 300, 150, 24
    top = max([*column["reference_share"], *column["current_share"], 1e-9])
    slot = (width - 2 * pad) / len(bins)
    bars = []
    for i, (r, c) in enumerate(
        zip(column["reference_share"], column["current_share"], strict=True)
    ):
        x = pad + i * slot
        for j, (value, colour) in enumerate(((r, "#9aa9b8"), (c, "#b5523b"))):
            h = (height - 2 * pad) * value / top
            bars.append(
                f'<rect x="{x + j * slot / 2:.1f}" y="{height - pad - h:.1f}"'
                f' width="{max(slot / 2 - 1, 1):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(bins[i])}: {'reference' if j == 0 else 'current'}"
                f" {value:.3f}</title></rect>"
            )
    return (
        f'<svg role="img" aria-label="shares of {html.escape(column["column"])}"'
        f' width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"'
        ' stroke="#888"/>' + "".join(bars) + "</svg>"
    )


def render_drift_html(report: dict[str, Any], reference: str, current: str) -> str:
    """One self-contained page: the verdict, a table of every column, a plot per column."""
    drifted = report["drifted"]
    verdict = (
        f"dataset drift: {len(report['drifted_columns'])} of {len(report['columns'])} columns"
        if drifted
        else f"no dataset drift ({len(report['drifted_columns'])} of {len(report['columns'])}"
        " columns drifted)"
    )
    rows = [
        [
            c["column"],
            c["test"],
            _fmt(c["statistic"]),
            f"{c['p_value']:.3g}",
            _fmt(c["psi"]),
            _fmt(c["jensen_shannon"]),
            "—" if c["wasserstein_normalized"] is None else _fmt(c["wasserstein_normalized"]),
            "yes" if c["drifted"] else "no",
            ", ".join(c["flags"]) or "—",
            ", ".join(f"{k} ({v})" for k, v in list(c["unseen_categories"].items())[:5]) or "—",
        ]
        for c in report["columns"]
    ]
    cards = [
        f"<div class='col'><h3>{html.escape(c['column'])}"
        f"{' — drifted' if c['drifted'] else ''}</h3>"
        f"<p>{c['test']} p = {c['p_value']:.3g}, PSI {_fmt(c['psi'])};"
        " grey: reference, red: current</p>"
        f"{_shares_svg(c)}</div>"
        for c in report["columns"]
    ]
    css = COLUMNS_CSS
    title = f"Keel drift — {Path(reference).name} → {Path(current).name}"
    colour = "#b71c1c" if drifted else "#2e7d32"
    t = report["thresholds"]
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title><style>{css}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f"<p style='font-size:1.3rem;color:{colour}'><b>{html.escape(verdict)}</b></p>",
            f"<p>A column drifts when its p-value (correction: {html.escape(t['correction'])})"
            f" is below {t['alpha']:g}; the table drifts when at least"
            f" {t['dataset_share']:.0%} of its columns do. Flags: PSI ≥ {t['psi']:g},"
            f" Jensen–Shannon ≥ {t['jensen_shannon']:g}, Wasserstein/σ ≥"
            f" {t['wasserstein']:g}.</p>",
            "<h2>Population stability index per column</h2>",
            _named_bars([(c["column"], c["psi"]) for c in report["columns"]], "PSI"),
            "<h2>Columns</h2>",
            _table(
                [
                    "column",
                    "test",
                    "statistic",
                    "p-value",
                    "PSI",
                    "JS",
                    "W/σ",
                    "drift",
                    "flags",
                    "unseen categories",
                ],
                rows,
            ),
            "<div class='cols'>",
            *cards,
            "</div></body></html>",
        ]
    )


def write_drift_report(report: dict[str, Any], reference: str, current: str, path: Path) -> str:
    """Write the drift page to ``path`` (whole or not at all); return its path."""
    atomic_write(path, render_drift_html(report, reference, current))
    return str(path)
