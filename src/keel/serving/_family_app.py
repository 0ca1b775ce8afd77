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
from keel.monitoring import MONITORING_REFERENCE
from keel.serving._experiment import experiment_routes, with_experiment_link
from keel.serving._http import ERROR_RESPONSES, error_answer
from keel.serving._log import PredictionLog
from keel.serving._middleware import _RequestContext
from keel.serving._observe import Metrics, Observed, load_keys
from keel.serving._state import ServingState


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
    *,
    serve: Callable[[Any], Any],
    routes: Callable[[ServingState], APIRouter],
    describe: Callable[[Any], dict[str, Any]],
    settings: ServingConfig | None = None,
    log: PredictionLog | None = None,
    monitoring: MonitoringConfig | None = None,
    privacy: Any = None,
    follow: tuple[str, str] | None = None,
    poll_seconds: float = 5.0,
    experiments: Any = None,
    max_body_bytes: int | None = None,
    health: Callable[[Any], dict[str, Any]] | None = None,
    before_metrics: Callable[[ServingState], None] | None = None,
    dashboard: Callable[[ServingState, Request, str | None], Response] | None = None,
    middleware: Callable[[ServingState], list[tuple[type, dict[str, Any]]]] | None = None,
    attach: Callable[[FastAPI], None] | None = None,
    follower: Callable[[FastAPI], Any] | None = None,
    state: Callable[..., ServingState] | None = None,
) -> FastAPI:
    """The app serving ``loaded`` (a package of ``family``): the core plus ``routes``.

    Every family's server is built here; the family gives plain functions.
    ``serve(loaded)``: what the app serves (``.loaded``, ``.version``, ``.info``,
    ``.check_ready()`` — :class:`ServedPackage` or the family's own); ``describe(served)``:
    what ``GET /model`` adds; ``health(served)``: what ``GET /health`` adds;
    ``before_metrics(state)``: refresh the family's gauges before ``GET /metrics``;
    ``dashboard(state, request, window)``: the family's own ``GET /dashboard`` page
    (default: the log's windows judged by ``family.monitor_windows``);
    ``middleware(state)``: ``(class, options)`` pairs inside the core's (innermost
    first: they see the request id and the body cap); ``attach(app)``: more models on
    ``app.state`` (a shadow, a canary); ``follower(app)``: the family's own alias
    follower; ``state``: the family's :class:`ServingState` class (or factory) when its
    routes need more than the core's. ``follow=(alias, tracking_uri)``: when the alias
    moves, the new version is loaded, must pass its self-test, and replaces the old;
    ``experiments``: A/B routing.
    """
    from keel.serving._app import _error_handlers, serving_lifespan

    settings = settings or ServingConfig()
    keys = load_keys(settings.api_keys)
    app = FastAPI(
        title=f"Keel — {loaded.name}",
        version=loaded.version,
        description=f"{family.name} model {loaded.name} version {loaded.version}"
        f" ({loaded.task})."
        + (" Every route but /health and /ready needs an API key." if keys else ""),
        lifespan=serving_lifespan,
        responses=ERROR_RESPONSES,
        # FastAPI checks per request whether OpenTelemetry providers are set up (~10 µs)
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    metrics = Metrics()
    state = (state or ServingState)(
        app, settings, monitoring or MonitoringConfig(), keys, metrics, log, privacy
    )
    app.state.served, app.state.keel, app.state.metrics = serve(loaded), state, metrics
    if attach is not None:
        attach(app)
    app.state.watcher = _follower(app, family, serve, follow, poll_seconds, follower)
    app.state.experiments = experiments
    metrics.serving(app.state.served.info)
    for layer, options in middleware(state) if middleware else ():
        app.add_middleware(layer, **options)
    cap = max_body_bytes if max_body_bytes is not None else settings.max_body_bytes
    app.add_middleware(_RequestContext, max_body_bytes=cap)
    app.add_middleware(Observed, metrics=metrics, version_of=lambda: app.state.served.version)
    _error_handlers(app)
    hooks = {"health": health, "before_metrics": before_metrics, "dashboard": dashboard}
    app.include_router(core_routes(state, family, describe, hooks))
    app.include_router(routes(state))
    app.include_router(experiment_routes(state))
    return app


def _follower(
    app: FastAPI,
    family: Any,
    serve: Callable[[Any], Any],
    follow: tuple[str, str] | None,
    poll_seconds: float,
    own: Callable[[FastAPI], Any] | None,
) -> Any:
    if follow is None:
        return None
    if own is not None:
        return own(app)
    from keel.serving._follow import PackageFollower

    return PackageFollower(app, *follow, poll_seconds, family.load, serve)


def family_app_from_spec(
    package: Any,
    family: Any,
    spec: Any,
    log: PredictionLog | None,
    *,
    ab_tests: bool = True,
    **parts: Any,
) -> FastAPI:
    """:func:`create_family_app` as a ``ServingSpec`` describes it (``keel serve``).

    Workers load ``NAME/VERSION`` of the alias they follow; with ``ab_tests`` a running
    experiment's challenger is loaded by the family and must pass its self-test.
    """
    from keel.serving._app import experiment_routing

    serve = parts["serve"]
    package.alias = spec.follow_alias or package.alias

    def challenger(version: str) -> Any:
        fresh = family.load(f"{package.name}/{version}", spec.tracking_uri)
        fresh.alias = "challenger"
        served = serve(fresh)
        ok, why = served.check_ready()
        if not ok:
            raise RuntimeError(why)
        return served

    return create_family_app(
        package,
        family,
        settings=spec.serving,
        log=log,
        monitoring=spec.monitoring,
        privacy=spec.privacy,
        follow=(spec.follow_alias, spec.tracking_uri) if spec.follow_alias else None,
        poll_seconds=spec.poll_seconds,
        experiments=experiment_routing(spec, package.name, challenger) if ab_tests else None,
        **parts,
    )


def core_routes(
    state: ServingState,
    family: Any,
    describe: Callable[[Any], dict],
    hooks: dict[str, Any] | None = None,
) -> APIRouter:
    """``/health``, ``/ready``, ``/model``, ``/metrics``, ``/dashboard`` of any family."""
    router = APIRouter()
    app = state.app
    health_extra = (hooks or {}).get("health") or (lambda served: {})
    before_metrics = (hooks or {}).get("before_metrics") or (lambda state: None)
    page = (hooks or {}).get("dashboard") or (
        lambda state, request, window: _dashboard(state, family, request, window)
    )

    @router.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and the model being served (no key needed)."""
        served = app.state.served
        return {
            "status": "ok",
            "model": served.info,
            "task": served.loaded.task,
            **health_extra(served),
        }

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
        served = app.state.served
        return {
            **served.info,
            "family": family.name,
            "task": served.loaded.task,
            **describe(served),
        }

    @router.get(
        "/metrics",
        dependencies=state.need("admin"),
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        """Prometheus metrics: requests, latency, errors, the model (and the family's own)."""
        before_metrics(state)
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
        """The monitoring dashboard of the served version, from this server's log.

        ``?window=hour|day|N`` (default: keel.yaml's ``monitoring.window``). The same
        page as ``keel monitor --html``, without raising alerts (that is the job of
        ``keel monitor``, run on a schedule).
        """
        return page(state, request, window)

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
    reference = loaded.documents.get(MONITORING_REFERENCE)
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
