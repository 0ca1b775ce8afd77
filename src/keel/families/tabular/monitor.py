"""`keel monitor` on a terminal for a tabular model: drift, prediction drift, accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HEADS = ("#", "from (UTC)", "rows", "drift", "drifted", "pred.", "acc/MAE", "DP", "p95 ms")


def monitor_row(w: dict[str, Any], num: Callable[[Any], str]) -> list[str]:
    """One window's cells after ``#``, start and rows."""
    m = w["metrics"]
    return [
        num(m.get("drift_share")) if w["judged"] else "too few rows",
        ", ".join((w["drift"] or {}).get("drifted_columns", [])[:4]) or "—",
        "[red]yes[/red]" if m.get("prediction_drift") else "—",
        num(m.get("accuracy", m.get("mae"))),
        num(m.get("demographic_parity_difference")),
        num(m.get("latency_p95_ms")),
    ]


def monitor_table() -> tuple[tuple[str, ...], Callable[..., list[str]]]:
    """Column heads and the row of one window."""
    return HEADS, monitor_row
