"""Alerts: rules over the monitor's windows, delivered once per incident.

A rule (``monitoring.alerts`` in keel.yaml) crosses when a complete, judged window's
metric is above (or below) its threshold. An *incident* is a run of crossing windows
for one rule and one model version: its first window raises one alert; later crossing
windows extend it silently; the first window that does not cross closes it, and a
later crossing opens a new incident (a new alert). The state — open incidents and the
last window judged — is a small JSON file beside the prediction log, so running
``keel monitor`` every few minutes never repeats an alert.

Sinks: ``log`` (Keel's logger), ``jsonl`` (one JSON object per line, appended), and
``webhook`` (HTTP POST of the alert as JSON, with a timeout and retries with
back-off; a receiver that never answers costs at most ``retries + 1`` timeouts and is
reported, never raised).
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from keel.config import shown_url
from keel.monitoring._monitor import MonitorReport, Window

logger = logging.getLogger("keel.monitoring")

STATE_FORMAT = 1


def crosses(rule: Any, value: float | None) -> bool:
    """Whether ``value`` is on the alerting side of ``rule``'s threshold."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value > rule.threshold if rule.direction == "above" else value < rule.threshold


def _message(rule: Any, window: Window, value: float, model: dict[str, Any]) -> str:
    what = (
        f"{rule.metric} {value:.4g} {'>' if rule.direction == 'above' else '<'} {rule.threshold:g}"
    )
    where = f"{model['name']} v{model['version']}, window {window.label} ({window.rows} rows)"
    columns = window.drift.get("drifted_columns") or []
    features = f"; drifted: {', '.join(columns[:8])}" if columns and "drift" in rule.metric else ""
    return f"[{rule.severity}] {what} — {where}{features}"


def evaluate(
    rules: list[Any],
    reports: dict[str, MonitorReport],
    state: dict[str, Any],
    default_window: str | int,
) -> list[dict[str, Any]]:
    """New alerts for ``rules`` over the windows of ``reports``.

    ``reports`` is keyed by window spec (``str(rule.window or default_window)``).

    ``state`` is updated in place: open incidents and the last window judged per rule
    (its ``mark``: ordinal or calendar start), so windows already judged are skipped
    next time — also when many windows share one timestamp (a large batch request).
    """
    alerts = []
    incidents = state.setdefault("incidents", {})
    judged = state.setdefault("judged", {})
    for rule, spec in ((r, str(r.window or default_window)) for r in rules):
        report = reports[spec]
        model = report.model
        key = f"{model['name']}/{model['version']}: {rule.key}"
        last = judged.get(key, -math.inf)
        for window in report.windows:
            if not (window.complete and window.judged) or window.mark <= last:
                continue
            judged[key] = window.mark
            value = window.metrics.get(rule.metric)
            if not crosses(rule, value):
                incidents.pop(key, None)  # the incident (if any) is over
                continue
            if key in incidents:  # same incident, already alerted
                incidents[key]["windows"] += 1
                continue
            alert = {
                "id": uuid.uuid4().hex,
                "time": time.time(),
                "severity": rule.severity,
                "rule": {
                    "metric": rule.metric,
                    "threshold": rule.threshold,
                    "when": rule.direction,
                    "window": rule.window,
                },
                "value": value,
                "model": model,
                "window": {
                    "index": window.index,
                    "start": window.start,
                    "end": window.end,
                    "label": window.label,
                    "rows": window.rows,
                },
                "features": [
                    c
                    for c in window.drift.get("columns", [])
                    if c["drifted"] and rule.metric in ("dataset_drift", "drift_share", "max_psi")
                ],
                "message": _message(rule, window, value, model),  # type: ignore[arg-type]
            }
            if rule.metric.startswith("prediction"):
                alert["features"] = window.prediction_drift.get("columns", [])
            incidents[key] = {"alert": alert["id"], "since": window.start, "windows": 1}
            alerts.append(alert)
    return alerts


def state_path(url: str, root: Path) -> Path:
    """Where the alert state of the log at ``url`` lives (beside a SQLite file)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///") + ".alerts.json")
    return root / ".keel" / "alerts-state.json"


def failure_alert(name: str, stage: str, what: str) -> dict[str, Any]:
    """The alert of a failed pipeline run (``kind: pipeline_failure``, critical)."""
    return {
        "id": uuid.uuid4().hex,
        "time": time.time(),
        "kind": "pipeline_failure",
        "severity": "critical",
        "model": {"name": name, "version": None},
        "stage": stage,
        "message": f"[critical] keel run of {name} failed at {stage}: {what}"[:2000],
    }


def load_state(path: Path) -> dict[str, Any]:
    """The alert state beside the log (empty when absent or unreadable)."""
    try:
        state = json.loads(path.read_text())
        return state if state.get("format") == STATE_FORMAT else {"format": STATE_FORMAT}
    except (OSError, ValueError, AttributeError):
        return {"format": STATE_FORMAT}


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the alert state whole (a temporary file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**state, "format": STATE_FORMAT}, indent=1))
    temporary.replace(path)


def post_json(url: str, payload: dict[str, Any], timeout: float, retries: int) -> str | None:
    """POST ``payload``; None when delivered, else why not (after every retry)."""
    body = json.dumps(payload, default=str).encode()
    problem = "not sent"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        request = urllib.request.Request(  # noqa: S310 (http(s) checked by the config)
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                if 200 <= answer.status < 300:
                    return None
                problem = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            problem = f"HTTP {exc.code}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break  # the receiver refuses this alert: retrying will not help
        except (urllib.error.URLError, OSError) as exc:
            problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return problem


def deliver(alerts: list[dict[str, Any]], sinks: list[Any], root: Path) -> list[dict[str, Any]]:
    """Send every alert to every sink; one delivery record per (alert, sink)."""
    records = []
    for alert in alerts:
        for sink in sinks:
            problem = None
            if sink.type == "log":
                level = logging.ERROR if alert["severity"] == "critical" else logging.WARNING
                logger.log(level, "alert %s", alert["message"])
                where = "log"
            elif sink.type == "jsonl":
                path = Path(sink.path)
                path = path if path.is_absolute() else root / path
                where = str(path)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with path.open("a") as out:
                        out.write(json.dumps(alert, default=str) + "\n")
                except OSError as exc:
                    problem = f"{type(exc).__name__}: {exc.strerror or exc}"
            else:
                where = shown_url(sink.url)  # webhook URLs often carry a secret token
                problem = post_json(sink.url, alert, sink.timeout_seconds, sink.retries)
            if problem:
                logger.error("alert %s not delivered to %s: %s", alert["id"], where, problem)
            records.append({"alert": alert["id"], "sink": sink.type, "to": where, "error": problem})
    return records


__all__ = [
    "crosses",
    "deliver",
    "evaluate",
    "failure_alert",
    "load_state",
    "post_json",
    "save_state",
    "shown_url",
    "state_path",
]
