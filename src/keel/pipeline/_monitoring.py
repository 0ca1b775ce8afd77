"""`keel monitor`: one model version's prediction log against its package, and alerts.

Reads the package's drift reference and metadata (not the model), the log's rows of
that version, computes the windows (and one set per other window size a rule asks
for), raises the alerts that are new, delivers them, keeps the alert state beside the
log, and records what it found on the model version (tag ``keel.monitor``: the
evidence for the ``drift`` and ``dashboard`` gates of ``keel check``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from keel.config import ProjectConfig, resolve_settings
from keel.errors import KeelInputError
from keel.families import FAMILIES
from keel.monitoring import (
    MONITORING_REFERENCE,
    DriftThresholds,
    MonitorReport,
    deliver,
    evaluate,
    load_state,
    log_frame,
    monitor_chunks,
    package_references,
    save_state,
    state_path,
)
from keel.registry import mlflow_scope, package_documents
from keel.serving import log_url, read_log
from keel.serving._log import iter_log
from keel.tasks import get_task

MONITOR_TAG = "keel.monitor"
RECENT_ALERTS = 50


def package_reference(uri: str, tracking_uri: str) -> tuple[dict[str, Any], Any, Any]:
    """``(metadata, features reference, outputs reference)`` of a registered version."""
    meta, documents = package_documents(uri, tracking_uri, ("drift_reference.json",))
    doc = documents.get("drift_reference.json")
    if doc is None:
        raise KeelInputError(
            f"{uri} (version {meta['version']}) has no drift reference in its package"
            " (registered by an older Keel); train it again with `keel run`"
        )
    try:
        features, outputs = package_references(doc)
    except ValueError as exc:
        raise KeelInputError(f"{uri}: its package's drift reference is unreadable: {exc}") from exc
    return meta, features, outputs


def run_monitor(
    project: ProjectConfig,
    model: str | None = None,
    log: str | None = None,
    window: str | int | None = None,
    alerts: bool = True,
    now: float | None = None,
) -> tuple[MonitorReport, list[dict[str, Any]]]:
    """Monitor ``model`` (default ``NAME@champion``); ``(report, deliveries)``.

    Raises
    ------
    KeelInputError
        Unknown model, no drift reference, no prediction log.
    """
    settings = project.monitoring
    uri = model or f"{project.name}@champion"
    tracking = resolve_settings(project).tracking_uri
    meta, documents = package_documents(uri, tracking, (MONITORING_REFERENCE,))
    family = FAMILIES.of_metadata(meta)
    # rows of features are judged by per-feature drift against the training profile;
    # every other family judges windows against its own package reference
    by_rows = family.capabilities.has_target
    if by_rows:
        meta, features, outputs = package_reference(uri, tracking)
    elif MONITORING_REFERENCE not in documents:
        raise KeelInputError(f"{uri} (version {meta['version']}) has no monitoring reference")
    target = log or project.serving.prediction_log
    if target is None:
        raise KeelInputError(
            "the prediction log is off (serving.prediction_log: null); give --log URL_OR_FILE"
        )
    url = log_url(target, project.root)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise KeelInputError(
            f"no prediction log at {url.removeprefix('sqlite:///')}; serve the model"
            " (`keel serve`) and send it requests first, or give --log"
        )
    thresholds = DriftThresholds.of(settings)
    main = window if window is not None else settings.window
    specs = {str(main): main} | {str(r.window): r.window for r in settings.alerts if r.window}
    now = time.time() if now is None else now
    if not by_rows:
        reports = family.monitor_log(
            lambda: _chunks(url, target, meta),
            log_frame([]),
            documents[MONITORING_REFERENCE],
            meta,
            specs,
            settings.min_rows,
            now,
        )
    else:
        # the log is read in chunks, once per window kind: memory stays flat
        reports = {
            key: monitor_chunks(
                _chunks(url, target, meta),
                features,
                outputs,
                meta,
                window=spec,
                min_rows=settings.min_rows,
                thresholds=thresholds,
                now=now,
            )
            for key, spec in specs.items()
        }
    report = reports[str(main)]
    deliveries: list[dict[str, Any]] = []
    state_file = state_path(url, project.root)
    state = load_state(state_file)
    if alerts:
        new = evaluate(settings.alerts, reports, state, main)
        deliveries = deliver(new, settings.sinks, project.root)
        state["recent"] = (state.get("recent", []) + new)[-RECENT_ALERTS:]
        report.alerts = new
        try:
            save_state(state_file, state)
        except OSError as exc:
            raise KeelInputError(
                f"cannot write the alert state {state_file}: {exc.strerror or exc}"
            ) from exc
    report.notes.append(f"recent alerts: {len(state.get('recent', []))} (state {state_file})")
    _record(tracking, meta, report, state, now)
    return report, deliveries


LOG_CHUNK = 100_000


def _chunks(url: str, target: str, meta: dict[str, Any]) -> Any:
    """The model version's rows, ``LOG_CHUNK`` at a time; one clear error if unreadable."""
    try:
        yield from iter_log(url, meta["name"], meta["version"], LOG_CHUNK)
    except Exception as exc:  # a database that is not a prediction log
        raise KeelInputError(
            f"cannot read the prediction log at {target}: {type(exc).__name__}"
        ) from exc


def production_rows(url: str, name: str, target: str, task: str) -> Any:
    """The log's labelled rows of every version of ``name``: inputs plus the label."""
    import pandas as pd

    rows = [r for r in read_log(url, model_name=name) if r.get("label") is not None]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records([r["inputs"] for r in rows])
    labels = pd.Series([r["label"] for r in rows])
    frame[target] = get_task(task).logged_truth(labels)
    return frame.drop_duplicates(ignore_index=True)


def retrain(
    project: ProjectConfig,
    report: MonitorReport,
    log: str | None = None,
    observer: Any = None,
) -> dict[str, Any]:
    """Continuous training: a new ``keel run`` when this monitoring run raised an alert.

    The run trains on the configured data plus the labelled production rows of the
    log, goes through every gate, and is promoted only by the release policy (it must
    beat the champion beyond noise on rows the champion never saw). The trigger is
    recorded on the new run (tags ``keel.retrain.*``) and on the monitored version
    (tag ``keel.retrained_by``).
    """
    from keel.pipeline._run import run_project

    wanted = set(project.monitoring.retrain.severities)
    triggers = [a for a in report.alerts if a["severity"] in wanted]
    if not triggers:
        return {
            "retrained": False,
            "why": f"no new alert of severity {', '.join(sorted(wanted))} in this run",
        }
    extra = None
    if project.monitoring.retrain.include_production_rows:
        url = log_url(log or project.serving.prediction_log or "", project.root)
        extra = production_rows(url, report.model["name"], project.target, report.model["task"])
    tags = {
        "keel.retrain.trigger": json.dumps(
            [{"id": a["id"], "message": a["message"]} for a in triggers]
        )[:5000],
        "keel.retrain.from_version": str(report.model["version"]),
        "keel.retrain.production_rows": str(0 if extra is None else len(extra)),
    }
    result = run_project(
        project,
        observer=observer,
        extra_rows=extra,
        extra_label=f"{0 if extra is None else len(extra)} labelled production rows",
        tags=tags,
    )
    tracking = resolve_settings(project).tracking_uri
    with mlflow_scope(tracking) as client:
        client.set_model_version_tag(
            report.model["name"],
            str(report.model["version"]),
            "keel.retrained_by",
            json.dumps({"run_id": result.run_id, "version": result.model.get("version")}),
        )
    return {
        "retrained": True,
        "triggers": [a["id"] for a in triggers],
        "production_rows": 0 if extra is None else len(extra),
        "run_id": result.run_id,
        "model": result.model,
    }


def recent_alerts(project: ProjectConfig, log: str | None = None) -> list[dict[str, Any]]:
    """The last alerts raised for the project's prediction log (newest last)."""
    target = log or project.serving.prediction_log
    if target is None:
        return []
    return load_state(state_path(log_url(target, project.root), project.root)).get("recent", [])


def _record(
    tracking: str, meta: dict[str, Any], report: MonitorReport, state: dict[str, Any], now: float
) -> None:
    """Tag the version with what this monitoring run saw (the gates' evidence)."""
    summary = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "rows": report.rows,
        "windows": len(report.windows),
        "window": report.window,
        "skew_drifted_columns": report.skew.get("drifted_columns", []),
        "open_incidents": sorted(
            k for k in state.get("incidents", {}) if k.startswith(f"{meta['name']}/")
        ),
        "new_alerts": len(report.alerts),
    }
    with mlflow_scope(tracking) as client:
        client.set_model_version_tag(
            meta["name"], meta["version"], MONITOR_TAG, json.dumps(summary)[:5000]
        )


__all__ = [
    "MONITOR_TAG",
    "package_reference",
    "production_rows",
    "recent_alerts",
    "retrain",
    "run_monitor",
]
