"""One app factory for a family's served package: the common core, the family's routes.

The core owns everything every served model has — FastAPI with Keel's error answers,
API keys, the request-id and body-cap middleware, Prometheus metrics, the alias follower
(swap on promote/rollback, after the new version's self-test), A/B routing — and the
routes ``GET /health``, ``/ready``, ``/model``, ``/metrics`` and ``/dashboard`` (windows
of the prediction log judged against the package's reference, by the family). The
family adds its answer routes (``POST /ask``, ``POST /recommend``, …) through
``routes(state)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from keel.config import MonitoringConfig, ServingConfig
from keel.serving._experiment import experiment_routes, with_experiment_link
from keel.serving._http import ERROR_RESPONSES, error_answer
from keel.serving._log import PredictionLog
from keel.serving._middleware import _RequestContext
from keel.serving._observe import Metrics, Observed, load_keys
from keel.serving._state import ServingState

REFERENCE = "monitoring_reference.json"


class ServedPackage:
    """A loaded package as the core serves it: name, version, a remembered self-test."""

    def __init__(self, loaded: Any, self_test: Callable[[Any], tuple[bool, str]]) -> None:
        self.loaded = loaded
        self.version = loaded.version
        self.self_test = self_test
        self.info = {
            "name": loaded.name,
            "version": loaded.version,
            "alias": loaded.alias,
            "semver": loaded.semver,
        }
        self.ready: tuple[bool, str] | None = None

    def check_ready(self) -> tuple[bool, str]:
        """The family's self-test of the model (once; then remembered)."""
        if self.ready is None:
            try:
                self.ready = self.self_test(self.loaded)
            except Exception as exc:  # reported: the server stays not ready
                self.ready = (False, f"self-test failed: {type(exc).__name__}")
        return self.ready


def create_family_app(
    loaded: Any,
    family: Any,
    spec: Any,
    log: PredictionLog | None,
    routes: Callable[[ServingState], APIRouter],
    describe: Callable[[Any], dict[str, Any]],
    self_test: Callable[[Any], tuple[bool, str]],
) -> FastAPI:
    """The app serving ``loaded`` (a package of ``family``), as ``spec`` describes.

    ``routes(state)``: the family's answer routes; ``describe(loaded)``: what ``GET
    /model`` adds to the name and version; ``self_test(loaded)``: ``(ok, why)``.
    """
    from keel.serving._app import _error_handlers, experiment_routing, serving_lifespan

    settings: ServingConfig = spec.serving
    keys = load_keys(settings.api_keys)
    app = FastAPI(
        title=f"Keel — {loaded.name}",
        version=loaded.version,
        description=f"{family.name} model {loaded.name} version {loaded.version}."
        + (" Every route but /health and /ready needs an API key." if keys else ""),
        lifespan=serving_lifespan,
        responses=ERROR_RESPONSES,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    metrics = Metrics()
    monitoring = spec.monitoring or MonitoringConfig()
    state = ServingState(app, settings, monitoring, keys, metrics, log, None, spec.privacy)
    loaded.alias = spec.follow_alias or loaded.alias
    app.state.served, app.state.keel, app.state.metrics = (
        ServedPackage(loaded, self_test),
        state,
        metrics,
    )
    app.state.watcher = None
    if spec.follow_alias:
        from keel.serving._follow import PackageFollower

        app.state.watcher = PackageFollower(
            app,
            spec.follow_alias,
            spec.tracking_uri,
            spec.poll_seconds,
            family.load,
            lambda fresh: ServedPackage(fresh, self_test),
        )

    def challenger(version: str) -> ServedPackage:
        fresh = family.load(f"{loaded.name}/{version}", spec.tracking_uri)
        fresh.alias = "challenger"
        served = ServedPackage(fresh, self_test)
        ok, why = served.check_ready()
        if not ok:
            raise RuntimeError(why)
        return served

    app.state.experiments = experiment_routing(spec, loaded.name, challenger)
    metrics.serving(app.state.served.info)
    app.add_middleware(_RequestContext, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(Observed, metrics=metrics, version_of=lambda: app.state.served.version)
    _error_handlers(app)
    app.include_router(core_routes(state, family, describe))
    app.include_router(routes(state))
    app.include_router(experiment_routes(state))
    return app


def core_routes(state: ServingState, family: Any, describe: Callable[[Any], dict]) -> APIRouter:
    """``/health``, ``/ready``, ``/model``, ``/metrics``, ``/dashboard`` of any family."""
    router = APIRouter()
    app = state.app

    @router.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and the model being served (no key needed)."""
        loaded = app.state.served.loaded
        return {"status": "ok", "model": app.state.served.info, "task": loaded.task}

    @router.get("/ready", responses={503: {"description": "The model has not answered yet."}})
    def ready() -> JSONResponse:
        """Readiness: the model passed its family's self-test (no key needed)."""
        ok, why = app.state.served.check_ready()
        return JSONResponse(
            {"ready": ok, "model": app.state.served.info, "self_test": why},
            status_code=200 if ok else 503,
        )

    @router.get("/model", dependencies=state.need("predict"))
    def model() -> dict[str, Any]:
        """The served model: name, version, family, task, and what its family tells."""
        loaded = app.state.served.loaded
        return {
            **app.state.served.info,
            "family": family.name,
            "task": loaded.task,
            **describe(loaded),
        }

    @router.get("/metrics", dependencies=state.need("admin"), response_class=Response)
    def prometheus() -> Response:
        """Prometheus metrics: requests, latency, errors, the model."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/dashboard", dependencies=state.need("admin"), response_class=HTMLResponse)
    def dashboard(request: Request, window: str | None = None) -> Response:
        """Monitoring of the served version over this server's prediction log."""
        return _dashboard(state, family, request, window)

    return router


def _dashboard(state: ServingState, family: Any, request: Request, window: str | None) -> Response:
    from keel.config import check_window
    from keel.serving._log import read_log

    if state.log is None:
        return error_answer(409, "the prediction log is off (serving.prediction_log)", request)
    try:
        spec = check_window(window) if window else state.monitoring.window
    except ValueError as exc:
        return error_answer(422, f"window: {exc}", request)
    loaded = state.app.state.served.loaded
    reference = loaded.documents.get(REFERENCE)
    if reference is None:
        return error_answer(409, "this version's package has no monitoring reference", request)
    state.log.flush()
    rows = read_log(state.log.url, model_name=loaded.name, model_version=loaded.version)
    frame = (
        pd.DataFrame.from_records(rows)
        if rows
        else pd.DataFrame(columns=["time", "inputs", "prediction", "label", "latency_ms"])
    )
    meta = {"name": loaded.name, "version": loaded.version, "task": loaded.task}
    reports = family.monitor_windows(
        frame, reference, meta, {"main": spec}, state.monitoring.min_rows, None
    )
    page = family.render_dashboard(reports["main"].to_dict(), [])
    return HTMLResponse(with_experiment_link(page, state.app.state.experiments))
