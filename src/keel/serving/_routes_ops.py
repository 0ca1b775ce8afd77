"""Routes for operators: health, readiness, the model, Prometheus metrics, the dashboard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from keel.config import check_window
from keel.monitoring import (
    DriftThresholds,
    load_state,
    log_frame,
    monitor,
    package_references,
    render_dashboard,
    state_path,
)
from keel.monitoring._logdb import last_write
from keel.serving._experiment import with_experiment_link
from keel.serving._http import ERROR_RESPONSES, error_answer
from keel.serving._log import read_log
from keel.serving._state import ServingState

PAGE_SECONDS = 60.0


def ops_routes(state: ServingState) -> APIRouter:
    """``/health``, ``/ready`` (open), ``/model``, ``/metrics`` and ``/dashboard``."""
    router = APIRouter()
    app = state.app

    @router.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and the model being served (no key needed)."""
        served = app.state.served
        return {"status": "ok", "model": served.info, "task": served.package.task}

    @router.get("/ready", responses={503: {"description": "The model has not answered yet."}})
    def ready() -> JSONResponse:
        """Readiness: the model answered its own example rows (no key needed).

        The first call (or the server's start-up) has the loaded model answer up to 20
        example rows of its package; until that passed the answer is 503, ``ready: false``
        with the reason.
        """
        served = app.state.served
        ok, why = served.check_ready()
        return JSONResponse(
            {"ready": ok, "model": served.info, "self_test": why}, status_code=200 if ok else 503
        )

    @router.get("/model", dependencies=state.need("predict"))
    def model() -> dict[str, Any]:
        """The model being served: name, version, task, input signature, card."""
        return app.state.served.describe()

    @router.get(
        "/metrics",
        dependencies=state.need("admin"),
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        """Prometheus metrics: requests, latency, errors by kind, predictions, model."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get(
        "/dashboard",
        dependencies=state.need("admin"),
        response_class=HTMLResponse,
        responses={
            200: {"content": {"text/html": {"schema": {"type": "string"}}}},
            # errors stay JSON: say so, or they would be documented as text/html
            **{
                code: {**ERROR_RESPONSES[code], "content": {"application/json": {}}}
                for code in (401, 403, 409, 422, 500)
            },
        },
    )
    def dashboard(request: Request, window: str | None = None) -> Response:
        """The monitoring dashboard of the model being served, from this server's log.

        ``?window=hour|day|N`` (default: keel.yaml's ``monitoring.window``). The same
        page as ``keel monitor --html``, without raising alerts (that is the job of
        ``keel monitor``, run on a schedule).
        """
        return _dashboard(state, request, window)

    return router


def _dashboard(state: ServingState, request: Request, window: str | None) -> Response:
    served, log, monitoring = state.app.state.served, state.log, state.monitoring
    try:
        features, outputs = package_references(served.package.documents["drift_reference.json"])
    except (KeyError, ValueError):
        return error_answer(
            409,
            "this model's package has no readable drift reference (registered by an"
            " older Keel); train it again with `keel run`",
            request,
        )
    if log is None:
        return error_answer(409, "the prediction log is off (serving.prediction_log)", request)
    try:
        spec = check_window(window) if window is not None else monitoring.window
    except ValueError as exc:
        return error_answer(422, f"window: {exc}", request)
    log.flush()
    package = served.package
    # the page is cached per log write: a GET that finds no new prediction or label (and
    # is within a minute of the last page: time windows close as time passes) reuses it
    stamp = (package.version, str(spec), *last_write(log.engine, package.name, package.version))
    cached = state.pages.get("dashboard")
    if cached is not None and cached[0] == stamp and time.time() - cached[1] < PAGE_SECONDS:
        page = with_experiment_link(cached[2], state.app.state.experiments)
        return HTMLResponse(page, headers={"X-Keel-Cache": "hit"})
    rows = read_log(log.url, model_name=package.name, model_version=package.version)
    report = monitor(
        log_frame(rows),
        features,
        outputs,
        {**package.metadata, "name": package.name, "version": package.version},
        window=spec,
        min_rows=monitoring.min_rows,
        thresholds=DriftThresholds.of(monitoring),
    )
    recent = load_state(state_path(log.url, Path.cwd())).get("recent", [])
    page = render_dashboard(report.to_dict(), recent)
    state.pages["dashboard"] = (stamp, time.time(), page)
    page = with_experiment_link(page, state.app.state.experiments)
    return HTMLResponse(page, headers={"X-Keel-Cache": "miss"})
