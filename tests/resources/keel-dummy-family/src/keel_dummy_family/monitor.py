"""Monitoring a constant model: requests and rows per window, latency."""

from __future__ import annotations

import html
import time
from typing import Any

import numpy as np

from keel.monitoring._monitor import MonitorReport, empty_windows


def windows(frame, reference, meta, spec, min_rows, now) -> MonitorReport:
    """Windows of the version's log: requests, rows scored, p95 latency."""
    now = time.time() if now is None else now
    model = {"name": meta.get("name"), "version": meta.get("version"), "task": "constant"}
    found = []
    for window, rows in empty_windows(frame, spec, min_rows, now):
        part = frame.iloc[rows]
        scored = [r.get("rows", 0) if isinstance(r, dict) else 0 for r in part["inputs"]]
        latency = part["latency_ms"].to_numpy(float)
        window.metrics = {
            "requests": float(len(part)),
            "rows_scored": float(sum(scored)),
            "latency_p95_ms": float(np.percentile(latency, 95)) if len(latency) else float("nan"),
        }
        found.append(window)
    notes = [] if len(frame) else ["no requests logged for this version yet"]
    return MonitorReport(model, spec, len(frame), found, {}, notes=notes)


def page(found: dict[str, Any]) -> str:
    """A minimal dashboard page."""
    name = html.escape(str(found["model"]["name"]))
    rows = "".join(f"<tr><td>{w['index']}</td><td>{w['rows']}</td></tr>" for w in found["windows"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title></head>"
        f"<body><h1>Constant model {name}</h1>"
        f"<table><tr><th>window</th><th>requests</th></tr>{rows}</table></body></html>"
    )
