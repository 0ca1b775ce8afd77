"""The run report: one JSON file for machines and one self-contained HTML page for people."""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_reports(report: dict[str, Any], folder: Path) -> dict[str, str]:
    """Write ``report.json`` and ``report.html`` into ``folder`` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "report.json",
        "html": folder / "report.html",
    }
    _atomic_write(paths["json"], json.dumps(report, indent=2, sort_keys=True, default=str))
    _atomic_write(paths["html"], render_html(report))
    return {k: str(v) for k, v in paths.items()}


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
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
    values = [(n, v) for n, v in values if v is not None]
    if not values:
        return ""
    top = max(abs(v) for _, v in values) or 1.0
    width, bar_h, gap, label_w = 420, 22, 8, 90
    rows = []
    for i, (name, value) in enumerate(values):
        y = i * (bar_h + gap)
        w = max(1.0, (width - label_w - 60) * abs(value) / top)
        rows.append(
            f'<text x="0" y="{y + 15}" font-size="13">{html.escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3b6ea5"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="13">{value:.4f}</text>'
        )
    height = len(values) * (bar_h + gap)
    return (
        f'<svg role="img" aria-label="validation {html.escape(metric)} by candidate" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(rows)
        + "</svg>"
    )


def render_html(report: dict[str, Any]) -> str:
    """Render the report as one HTML page with no external resources."""
    model = report["model"]
    data = report["data"]
    primary = report["primary_metric"]
    candidates = report["candidates"]
    test_rows = sorted(report["test_metrics"].items())
    cand_metrics = sorted({k for c in candidates for k in c["validation"]})
    cand_rows = [
        [
            c["name"] + (" (chosen)" if c["name"] == model["candidate"] else ""),
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
        for c in report["schema"]["columns"]
    ]
    title = f"Keel run report — {model['name']} v{model['version']}"
    css = (
        "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}"
        "table{border-collapse:collapse;margin:0.5rem 0 1.5rem}"
        "td,th{border:1px solid #ccc;padding:0.25rem 0.6rem;text-align:left}"
        "th{background:#f2f2f2}code{background:#f6f6f6;padding:0 0.2rem}"
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{css}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Task <b>{html.escape(report['task'])}</b>; registered as "
        f"<code>models:/{html.escape(model['name'])}@{html.escape(str(model['alias']))}</code>"
        f" (version {html.escape(str(model['version']))}); MLflow run "
        f"<code>{html.escape(report['run_id'])}</code>.</p>",
        "<h2>Test metrics of the chosen model</h2>",
        _table(["metric", "value"], [list(r) for r in test_rows]),
        f"<h2>Candidates (validation; primary metric: {html.escape(primary)})</h2>",
        _bars(candidates, primary),
        _table(["candidate", "fit time", *cand_metrics], cand_rows),
        "<h2>Data lineage</h2>",
        _table(
            [
                "source",
                "digest",
                "rows",
                "snapshot",
                "schema digest",
                "split digest",
                "split sizes",
            ],
            [
                [
                    data["source"],
                    data["digest"],
                    data["rows"],
                    data["snapshot"],
                    data["schema_digest"],
                    data["split_digest"],
                    json.dumps(data["split_sizes"]),
                ]
            ],
        ),
        "<h2>Schema</h2>",
        _table(["column", "kind", "role", "nullable", "note"], schema_rows),
        "</body></html>",
    ]
    return "\n".join(parts)
